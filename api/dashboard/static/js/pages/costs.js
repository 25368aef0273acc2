// Costs: the ledger's summary, a timeline chart per provider, costs by agent and by provider, and (where the server
// serves them) analytics and the cost per successful call of each campaign.

import { get, hasRoute } from "../api.js";
import { colorFor, hbars, stackedBars } from "../chart.js";
import { count, duration, empty, field, fill, h, table, unavailable, usd } from "../ui.js";

const DAY = 86400000;

function isoDay(d) {
  return d.toISOString().slice(0, 10);
}

export async function render(main) {
  const st = { days: 30, period: "daily" };
  const controls = h("form", { class: "filters", "aria-label": "Period" },
    field("Range", h("select", { name: "days" }, [7, 30, 90, 365].map((d) =>
      h("option", { value: d, selected: d === st.days }, `last ${d} days`)))),
    field("Group by", h("select", { name: "period" }, ["daily", "weekly", "monthly"].map((p) =>
      h("option", { value: p, selected: p === st.period }, p)))));
  controls.addEventListener("change", () => {
    st.days = Number(controls.elements.days.value);
    st.period = controls.elements.period.value;
    drawRange();
  });
  const summary = h("div", { "data-testid": "cost-summary" });
  const timeline = h("div", { "data-testid": "cost-timeline" });
  const byAgent = h("div", {});
  const byProvider = h("div", {});
  const analytics = h("div", {});
  const campaigns = h("div", {});
  main.append(
    h("div", { class: "page-head" }, h("div", {}, h("h1", {}, "Costs"),
      h("p", { class: "muted" }, "Exact ledger totals in US dollars; usage without a price is counted apart, never as $0.")),
      controls),
    summary,
    h("section", { class: "panel", "aria-labelledby": "tl-h" }, h("h2", { id: "tl-h" }, "Cost over time"), timeline),
    h("div", { class: "grid" },
      h("section", { class: "panel", "aria-labelledby": "ag-h" }, h("h2", { id: "ag-h" }, "By agent"), byAgent),
      h("section", { class: "panel", "aria-labelledby": "pr-h" }, h("h2", { id: "pr-h" }, "By provider (all time)"), byProvider)),
    h("section", { class: "panel", "aria-labelledby": "cp-h" }, h("h2", { id: "cp-h" }, "Cost per successful call, by campaign"), campaigns),
    h("section", { class: "panel", "aria-labelledby": "an-h" }, h("h2", { id: "an-h" }, "Call analytics"), analytics));

  const summaryLoad = fill(summary, async () => {
    const s = await get("/api/costs/summary");
    const providers = Object.entries(s.by_provider || {}).sort((a, b) => b[1] - a[1]);
    fill(byProvider, async () => (providers.length
      ? hbars(providers.map(([name, value]) => ({ name, value, color: colorFor(name) })), { format: (v) => usd(v), label: "Cost by provider" })
      : empty("No usage yet.")));
    return h("div", { class: "cards" },
      card("Total", usd(s.total_cost, { exact: true }), "all time"),
      card("This month", usd(s.this_month_cost, { exact: true }), "since the 1st, UTC"),
      card("Usage events", count(s.event_count, "event"), ""),
      card("Without a price", count(s.unpriced_event_count, "event"), s.unpriced_event_count ? "add rates to pricing.yaml" : "every event priced"));
  }, "Loading the summary");

  function drawRange() {
    const end = new Date();
    const start = new Date(end.getTime() - (st.days - 1) * DAY);
    const range = { start_date: isoDay(start), end_date: isoDay(end) };
    fill(timeline, async () => {
      const points = await get("/api/costs/timeline", { period: st.period, ...range });
      const filled = st.period === "daily" ? fillDays(points, start, end) : points;
      if (!filled.some((p) => p.total_cost > 0)) {
        return empty("No costs in this range.");
      }
      const providers = [...new Set(filled.flatMap((p) => Object.keys(p.by_provider || {})))].sort();
      return stackedBars({
        labels: filled.map((p) => p.date.slice(5)),
        series: providers.map((name) => ({ name, color: colorFor(name), values: filled.map((p) => (p.by_provider || {})[name] || 0) })),
        format: (v) => usd(v),
        label: `Cost per ${st.period === "daily" ? "day" : st.period === "weekly" ? "week" : "month"}, by provider`,
      });
    }, "Loading the timeline");
    fill(byAgent, async () => {
      const rows = await get("/api/costs/by-agent", range);
      if (!rows.length) return empty("No agent has costs yet.");
      rows.sort((a, b) => b.total_cost - a.total_cost);
      return [hbars(rows.map((r, i) => ({ name: r.agent_name || r.agent_id || "no agent", value: r.total_cost,
        note: count(r.session_count, "call"), colorIndex: i })), { format: (v) => usd(v), label: "Cost by agent" }),
      table([{ title: "Agent" }, { title: "Calls", num: true }, { title: "Cost", num: true }, { title: "Per call", num: true }],
        rows.map((r) => h("tr", {}, h("td", {}, r.agent_name || r.agent_id || "no agent"),
          h("td", { class: "num" }, r.session_count), h("td", { class: "num" }, usd(r.total_cost)),
          h("td", { class: "num" }, r.session_count ? usd(r.total_cost / r.session_count) : "—"))), { label: "Cost by agent" })];
    }, "Loading agents");
    fill(campaigns, () => campaignView({ start: range.start_date, end: range.end_date }), "Loading campaigns");
    fill(analytics, () => analyticsView(), "Loading analytics");
  }
  drawRange();
  await summaryLoad;
}

function card(label, value, note) {
  return h("div", { class: "card" }, h("div", { class: "label" }, label), h("div", { class: "value" }, value),
    note ? h("div", { class: "muted small" }, note) : null);
}

function fillDays(points, start, end) {
  const byDate = new Map(points.map((p) => [p.date, p]));
  const out = [];
  for (let t = Date.parse(isoDay(start)); t <= Date.parse(isoDay(end)); t += DAY) {
    const d = isoDay(new Date(t));
    out.push(byDate.get(d) || { date: d, total_cost: 0, by_provider: {} });
  }
  return out;
}

// 004's /api/metrics/by-campaign: per campaign, its whole cost and cost per reply (outreach), and in `voice` its
// calls' usage and the cost per successful call (a call whose analysis has a successful outcome). Every figure is
// the API's own, shown in full (the ledger is exact to the nano-USD).
async function campaignView(range) {
  if (!(await hasRoute("GET", "/api/metrics/by-campaign"))) return unavailable("Campaign costs (/api/metrics/by-campaign)");
  const { campaigns } = await get("/api/metrics/by-campaign", range);
  if (!campaigns || !campaigns.length) return empty("No campaigns in this range.");
  const exact = (v) => usd(v, { exact: true });
  const voiceOf = (c) => c.voice || {};
  const charted = campaigns.filter((c) => voiceOf(c).cost_per_successful_call != null)
    .sort((a, b) => b.voice.cost_per_successful_call - a.voice.cost_per_successful_call);
  const minutes = (m) => Number(m || 0).toLocaleString("en-US", { maximumFractionDigits: 2 });
  return [
    charted.length
      ? hbars(charted.map((c, i) => ({ name: c.campaign || "(none)", value: c.voice.cost_per_successful_call,
        note: count(c.voice.successful_calls, "successful call"), colorIndex: i })),
      { format: exact, label: "Cost per successful call by campaign" })
      : empty("No campaign has a successful call in this range yet."),
    table([{ title: "Campaign" }, { title: "Calls", num: true }, { title: "Minutes", num: true },
      { title: "Calls' cost", num: true }, { title: "Successful", num: true }, { title: "Per successful call", num: true },
      { title: "Replies", num: true }, { title: "Per reply", num: true }, { title: "Campaign cost", num: true }],
    campaigns.map((c) => {
      const v = voiceOf(c);
      return h("tr", { dataset: { campaign: c.campaign } }, h("td", {}, c.campaign || "(none)"),
        h("td", { class: "num" }, v.calls ?? "—"), h("td", { class: "num" }, v.minutes == null ? "—" : minutes(v.minutes)),
        h("td", { class: "num" }, exact(v.cost_usd)), h("td", { class: "num" }, v.successful_calls ?? "—"),
        h("td", { class: "num" }, exact(v.cost_per_successful_call)),
        h("td", { class: "num" }, c.replies ?? "—"), h("td", { class: "num" }, exact(c.cost_per_reply)),
        h("td", { class: "num" }, exact(c.cost_usd)));
    }), { label: "Campaigns" }),
    h("p", { class: "muted small" }, "Calls' cost is all usage of the campaign's calls, failed and unanswered attempts " +
      "included; the campaign cost adds its external cost events. A successful call is one whose post-call analysis " +
      "has a successful outcome; — where there is nothing to divide by."),
  ];
}

// 003's /api/analytics/summary over the last 30 days.
async function analyticsView() {
  if (!(await hasRoute("GET", "/api/analytics/summary"))) return unavailable("Call analytics (/api/analytics/summary)");
  const a = await get("/api/analytics/summary", { period: "month" });
  const top = a.top_agents || [];
  return [
    h("div", { class: "cards", "data-testid": "analytics-cards" },
      card("Calls", count(a.total_calls, "call"), "last 30 days"),
      card("Talk time", `${Number(a.total_minutes || 0).toLocaleString("en-US", { maximumFractionDigits: 2 })} min`, ""),
      card("Average call", duration(a.average_call_duration), "ended calls"),
      card("Success rate", a.success_rate == null ? "—" : `${Math.round(a.success_rate * 100)} %`,
        count(a.successful_calls, "successful call")),
      card("Calls' cost", usd(a.cost_usd, { exact: true }), ""),
      card("Per successful call", usd(a.cost_per_successful_call, { exact: true }), ""),
      card("Busiest hour", a.busiest_hour == null ? "—" : `${String(a.busiest_hour).padStart(2, "0")}:00 UTC`, "")),
    top.length ? hbars(top.map((t, i) => ({ name: t.name || t.agent_id, value: t.calls, colorIndex: i })),
      { format: (v) => count(v, "call"), label: "Calls by agent" }) : null,
  ];
}
