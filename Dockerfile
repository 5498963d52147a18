# minut2mqtt container: build a wheel in one stage, install it into a slim runtime.
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY minut2mqtt ./minut2mqtt
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.12-slim
LABEL org.opencontainers.image.title="minut2mqtt" \
      org.opencontainers.image.description="Minut Point sensors, homes and events on MQTT with Home Assistant discovery"
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && useradd --system --uid 10001 --home-dir /data minut2mqtt \
    && mkdir -p /data && chown minut2mqtt /data
USER minut2mqtt
ENV MINUT2MQTT_STATE_DIR=/data \
    PYTHONUNBUFFERED=1
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=60s --timeout=5s --start-period=30s \
  CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('MINUT2MQTT_WEBHOOK__PORT', '8000'), timeout=4)" || exit 1
ENTRYPOINT ["minut2mqtt"]
CMD ["run"]
