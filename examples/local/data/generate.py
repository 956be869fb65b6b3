"""Write the example's synthetic data: calls per region and hour, one CSV file per day.

The numbers are made up (a fixed random seed, a daily rhythm, quieter weekends) with two events
for the report to find: a festival in Riverbend on Saturday 9 March and a network outage in
Highmoor on the morning of Sunday 10 March. The file for 6 March is missing on purpose, as a
day whose data never arrived: runs whose date stencil needs that day wait for it.

    python examples/local/data/generate.py
"""

import csv
import datetime as dt
import math
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIRST, LAST = dt.date(2024, 3, 1), dt.date(2024, 3, 10)
MISSING = {dt.date(2024, 3, 6)}
#: region -> calls in an average weekday hour at the daily peak
REGIONS = {
    "Capital": 2400,
    "Northport": 1100,
    "Riverbend": 820,
    "Eastvale": 640,
    "Lakeside": 560,
    "Westfield": 430,
    "Southgate": 380,
    "Highmoor": 260,
}


def daily_rhythm(hour: int) -> float:
    """Share of the peak hour's calls: quiet at night, busy late morning and early evening."""
    day = math.exp(-((hour - 11) ** 2) / 18) + 0.9 * math.exp(-((hour - 18.5) ** 2) / 10)
    return 0.04 + day


def event_factor(region: str, day: dt.date, hour: int) -> float:
    if region == "Riverbend" and day == dt.date(2024, 3, 9) and 12 <= hour <= 23:
        return 1.9  # the spring festival
    if region == "Highmoor" and day == dt.date(2024, 3, 10) and 2 <= hour <= 10:
        return 0.08  # the outage: a few calls from the neighbouring cells
    return 1.0


def main() -> None:
    rng = random.Random(20240301)
    day = FIRST
    while day <= LAST:
        if day not in MISSING:
            weekend = 0.94 if day.weekday() >= 5 else 1.0
            with open(HERE / f"calls_{day.isoformat()}.csv", "w", newline="") as out:
                writer = csv.writer(out)
                writer.writerow(["region", "hour", "calls", "callers"])
                for region, peak in REGIONS.items():
                    for hour in range(24):
                        expected = peak * daily_rhythm(hour) * weekend * event_factor(region, day, hour)
                        calls = max(0, round(rng.gauss(expected, 0.04 * expected + 2)))
                        callers = round(calls * rng.uniform(0.55, 0.65))
                        writer.writerow([region, hour, calls, callers])
        day += dt.timedelta(days=1)


if __name__ == "__main__":
    main()
