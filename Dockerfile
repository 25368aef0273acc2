# The control API and worker. Point it at a LiveKit server with VOXARENA_LIVEKIT_URL/_API_KEY/_API_SECRET.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    VOXARENA_HOST=0.0.0.0 VOXARENA_PORT=8080 VOXARENA_DATA_DIR=/data \
    VOXARENA_PRICING_FILE=/app/pricing.yaml HOME=/home/voxarena
RUN useradd --create-home --uid 10001 voxarena && mkdir /data && chown voxarena /data
WORKDIR /app
COPY pyproject.toml README.md pricing.yaml ./
COPY api ./api
COPY core ./core
COPY pipelines ./pipelines
COPY worker ./worker
RUN pip install --no-cache-dir .
USER voxarena
VOLUME /data
EXPOSE 8080 8081
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4).status == 200 else 1)"
CMD ["voxarena", "serve"]
