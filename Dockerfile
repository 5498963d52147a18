# minut2mqtt container: build a wheel in one stage, install it into a slim runtime without
# compilers or build tools. Configuration comes from MINUT2MQTT_* variables and/or a YAML file
# mounted at $MINUT2MQTT_CONFIG (e.g. -v ./minut2mqtt.yaml:/config/minut2mqtt.yaml:ro
# -e MINUT2MQTT_CONFIG=/config/minut2mqtt.yaml).
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY minut2mqtt ./minut2mqtt
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.12-slim
LABEL org.opencontainers.image.title="minut2mqtt" \
      org.opencontainers.image.description="Minut Point sensors, homes and events on MQTT with Home Assistant discovery" \
      org.opencontainers.image.licenses="MIT"
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl \
    && rm -rf /wheels \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin minut2mqtt \
    && mkdir -p /data \
    && chown 10001 /data
USER 10001
ENV MINUT2MQTT_STATE_DIR=/data \
    MINUT2MQTT_WEBHOOK__PORT=8000 \
    PYTHONUNBUFFERED=1
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=60s --timeout=5s --start-period=30s \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ['MINUT2MQTT_WEBHOOK__PORT'], timeout=4)"]
ENTRYPOINT ["minut2mqtt"]
CMD ["run"]
