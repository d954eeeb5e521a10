"""What the offer-response model adds to one recommendation: the acceptance step of the
request path (``service.decision.acceptance.assess_acceptance``) with and without a model.

Fits the response model on ``--bank-marketing`` (``training.response.fit_response``, the
algorithm ``nbo train response`` chooses on the dev file unless ``--algorithm`` says
otherwise), then times the step for ``--candidates`` products of the catalogue (every
holdable product by default: more than any request has left after the filters) for an
adult customer with a six-entry contact history, best of ``--repeat`` rounds of
``--number`` calls. The model's prediction runs as in the service (one OpenMP thread);
BLAS is limited to one thread as ``service.app`` does. A script that prints figures, not
a test: on a busy machine the figures grow with the load.

Example:
    python -m loadtests.bench_response \\
        --bank-marketing ../shared/data/bank_marketing/bank_marketing_dev.csv
"""

from __future__ import annotations

import argparse
import timeit
from datetime import UTC, datetime, timedelta
from pathlib import Path

from threadpoolctl import threadpool_limits

from core.catalogue import load_catalogue
from core.scoring.response import ResponseModel
from core.settings import PACKAGE_DIR
from service.decision.acceptance import assess_acceptance
from service.decision.contact_policy import ContactEntry
from training.response import ALGORITHMS, fit_response, load_bank_marketing

RECORD = {"age": 41, "job": "services", "marital": "married", "education": "high.school"}
HISTORY = (  # kind, product, channel, days ago
    ("shown", "credit_card", "app", 20),
    ("shown", "credit_card", "app", 14),
    ("shown", "funds", "push", 12),
    ("accepted", "funds", "push", 11),
    ("shown", "loans", "sms", 9),
    ("shown", "taxes", "app", 8),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bank-marketing", type=Path, required=True, help="training CSV")
    parser.add_argument("--algorithm", choices=ALGORITHMS, default="gradient_boosting")
    parser.add_argument("--candidates", type=int, default=0, help="0 = every holdable product")
    parser.add_argument("--number", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    model: ResponseModel = fit_response(load_bank_marketing(args.bank_marketing), args.algorithm)
    products = list(load_catalogue(PACKAGE_DIR / "catalogue.yaml").holdable)
    products = products[: args.candidates or len(products)]
    now = datetime.now(UTC)
    history = [
        ContactEntry(kind, product, channel, (now - timedelta(days=days)).timestamp())
        for kind, product, channel, days in HISTORY
    ]
    print(f"{args.algorithm}, {len(products)} candidates")
    with threadpool_limits(limits=1, user_api="blas"):
        for label, scorer in (("without a model", None), ("with the model", model)):

            def step(scorer: ResponseModel | None = scorer) -> object:
                return assess_acceptance(scorer, RECORD, products, "app", history, now)

            best = min(timeit.repeat(step, number=args.number, repeat=args.repeat))
            print(f"{label:16s} {best / args.number * 1e6:8.0f} us per request")


if __name__ == "__main__":
    main()
