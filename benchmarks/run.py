"""`make bench`: every benchmark, each printing ratios against a baseline measured in the same run.

Benchmarks that need something this machine may not have (pyspark and Java, the real datasets in
``../shared/data``) say so and are skipped; the rest always run.
"""

from __future__ import annotations

import importlib.util

from benchmarks import (
    backtest_cost,
    features_speed,
    real_data,
    scoring_speed,
    streaming,
    synth_speed,
    treeshap_speed,
)


def main() -> None:
    print("## synthetic generator\n")
    synth_speed.main(["--leads", "10000", "100000"])
    print("\n## features\n")
    features_speed.main([])
    print("\n## scoring and explanations\n")
    scoring_speed.main(["--leads", "100000", "1000000"])
    print("\n## more leads than memory: range by range, and worker processes\n")
    streaming.main([])
    print("\n## exact TreeSHAP engines\n")
    treeshap_speed.main([])
    print("\n## rolling backtest against the single fit it replaced\n")
    backtest_cost.main([])
    print("\n## real CRM data\n")
    if real_data.DEFAULT_X_EDUCATION.exists() and real_data.DEFAULT_BPI.exists():
        real_data.main([])
    else:
        print(f"skipped: {real_data.DEFAULT_X_EDUCATION.parent.parent} not found")
    print("\n## Spark vs local\n")
    if importlib.util.find_spec("pyspark") is None:
        print("skipped: pyspark is not installed (pip install 'leadml[spark]')")
    else:
        from benchmarks import spark_vs_local

        spark_vs_local.main(["--leads", "1000000"])


if __name__ == "__main__":
    main()
