# The operator image: stagectl on a slim Python, running as a non-root user.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY phases ./phases
COPY controller ./controller
RUN python -m venv /opt/stage-rollout && /opt/stage-rollout/bin/pip install --no-cache-dir .

FROM python:3.11-slim
COPY --from=build /opt/stage-rollout /opt/stage-rollout
USER 65532:65532
ENV PATH=/opt/stage-rollout/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
ENTRYPOINT ["stagectl"]
CMD ["run", "--leader-elect"]
