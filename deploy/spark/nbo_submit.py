"""The ``nbo`` command as a spark-submit application (docs/operations.md).

spark-submit runs a Python *file* and puts its folder first on ``sys.path``; this file
lives outside the project's packages so that ``cli/features.py`` cannot shadow the
``features`` package, as it would with ``spark-submit cli/main.py``. The arguments are
those of ``nbo``:

    spark-submit --master spark://host:7077 deploy/spark/nbo_submit.py \
        features materialize --engine spark
"""

from cli.main import app

if __name__ == "__main__":
    app(prog_name="nbo")
