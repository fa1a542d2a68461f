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
# The hub runs unprivileged. It writes only under /data: the data dir (admin token, secret key, beat schedule)
# and, in the working directory, the default SQLite database, its migration lock file and an optional .env.
# /data is created owned by that user before VOLUME, so a fresh volume starts with the same owner.
RUN groupadd --system --gid 10001 crmhub \
    && useradd --system --uid 10001 --gid crmhub --home-dir /data --no-create-home --shell /usr/sbin/nologin crmhub \
    && mkdir -p /data && chown crmhub:crmhub /data
ENV CRMHUB_DATA_DIR=/data
VOLUME /data
WORKDIR /data
# Numeric, so a runtime that enforces non-root (Kubernetes runAsNonRoot) can check it without /etc/passwd.
USER 10001:10001
EXPOSE 8000
CMD ["crmhub", "serve", "--host", "0.0.0.0", "--port", "8000"]
