# syntax=docker/dockerfile:1
# Multi-stage image of the NBO service. Build: docker build -t nbo .
# Run:  docker run -p 8000:8000 -e NBO_REDIS_URL=redis://redis:6379/0 \
#         -e NBO_MLFLOW_TRACKING_URI=http://mlflow:5000 nbo
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc g++ make \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY core core
COPY features features
COPY training training
COPY registry registry
COPY service service
COPY cli cli
COPY loadtests loadtests
RUN python -m venv /opt/nbo && /opt/nbo/bin/pip install --no-cache-dir --upgrade pip \
    && /opt/nbo/bin/pip install --no-cache-dir .

FROM python:3.11-slim AS runtime
# BLAS threads = 1: every worker scores one customer at a time from many request threads;
# multi-threaded BLAS there only oversubscribes the cores (measured: docs/performance.md).
RUN useradd --create-home --uid 10001 nbo
COPY --from=build /opt/nbo /opt/nbo
ENV PATH=/opt/nbo/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    OPENBLAS_NUM_THREADS=1 \
    OMP_NUM_THREADS=1 \
    MKL_NUM_THREADS=1 \
    NBO_HOME=/home/nbo/var \
    NBO_HOST=0.0.0.0 \
    NBO_PORT=8000
USER nbo
WORKDIR /home/nbo
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD python -c "import os,sys,urllib.request; url='http://127.0.0.1:'+os.environ.get('NBO_PORT','8000')+'/healthz'; sys.exit(0 if urllib.request.urlopen(url, timeout=2).status == 200 else 1)"
CMD ["nbo", "serve"]
