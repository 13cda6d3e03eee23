"""Wearable analytics: pure functions over minute-level Fitbit data (daily summaries today;
sleep and circadian metrics to come), each with its definition and reference."""

from explorer.wearables.daily import RESTING_WINDOW_MINUTES, VALID_WEAR_MINUTES, daily_summary_sql

__all__ = ["RESTING_WINDOW_MINUTES", "VALID_WEAR_MINUTES", "daily_summary_sql"]
