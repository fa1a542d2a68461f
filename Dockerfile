FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY hub hub
COPY connectors connectors
COPY identity identity
COPY enrichment enrichment
COPY webhooks webhooks
COPY migrations migrations
RUN pip install --no-cache-dir .
ENV CRMHUB_DATA_DIR=/data
VOLUME /data
EXPOSE 8000
CMD ["crmhub", "serve", "--host", "0.0.0.0", "--port", "8000"]
