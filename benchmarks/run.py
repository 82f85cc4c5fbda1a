"""`make bench`: every benchmark, each printing ratios against a baseline measured in the same run."""

from __future__ import annotations

from benchmarks import features_speed, scoring_speed, synth_speed


def main() -> None:
    print("## synthetic generator\n")
    synth_speed.main(["--leads", "10000", "100000"])
    print("\n## features\n")
    features_speed.main([])
    print("\n## scoring and explanations\n")
    scoring_speed.main(["--leads", "100000", "1000000"])


if __name__ == "__main__":
    main()
