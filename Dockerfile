# The project's image: the code location (dagster api grpc), the run workers the Helm chart's
# K8sRunLauncher starts, and Celery workers all run it. It installs the project the way the
# README does (a venv, pip with the pinned constraints), plus the celery extra.
FROM python:3.11-slim

WORKDIR /opt/callcenter
COPY . .
RUN python3 -m venv .venv \
 && .venv/bin/pip install -q --no-cache-dir -c constraints.txt -e '.[celery]' \
 # pgserver's PostgreSQL refuses to run as root; the image never uses it (WAREHOUSE_URL is set).
 && useradd --create-home --uid 10001 dagster
ENV PATH=/opt/callcenter/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1
USER dagster

# The Helm chart passes `dagster api grpc` its arguments (deploy/values.yaml: dagsterApiGrpcArgs).
EXPOSE 3030
CMD ["dagster", "api", "grpc", "-h", "0.0.0.0", "-p", "3030", "-m", "pipelines.definitions"]
