"""Small seeded factories shared by tests, notebooks, benchmarks and the demo."""

from explorer.testing.factories import (
    make_heart_rate_minutes,
    make_measurements,
    make_persons,
    make_steps_minutes,
    person_ids,
)

__all__ = ["make_heart_rate_minutes", "make_measurements", "make_persons", "make_steps_minutes", "person_ids"]
