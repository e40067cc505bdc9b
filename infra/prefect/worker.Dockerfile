# The basebench worker: this checkout at /opt/basebench with its pinned dependencies.
# Flow runs load flows/deployments.py from here, so deploy from inside this container
# (`docker compose exec worker basebench deploy`): the deployments then point at /opt/basebench.
FROM python:3.11-slim-bookworm
WORKDIR /opt/basebench
COPY pyproject.toml constraints.txt ./
COPY flows flows
COPY tasks tasks
COPY infra infra
COPY apps apps
COPY configs configs
COPY prefect.yaml ./
RUN pip install --no-cache-dir -c constraints.txt -e .
ENV DO_NOT_TRACK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false
CMD ["prefect", "worker", "start", "--pool", "basebench"]
