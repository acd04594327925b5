from datetime import UTC, datetime, time

from knowledge.clock import ShopTime

SHOP = ShopTime("Asia/Shanghai")


def test_day_one_at_ten_is_the_next_calendar_day_whatever_the_add_hour():
    added = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)  # Monday 15:00 local
    assert SHOP.local(SHOP.day_n_at(added, 1, time(10, 0))) == datetime(2026, 11, 24, 10, 0, tzinfo=SHOP.tz)


def test_day_zero_is_the_add_day_in_shop_time_not_utc():
    added = datetime(2026, 11, 23, 17, 30, tzinfo=UTC)  # Tuesday 01:30 local, still Monday in UTC
    assert SHOP.local(SHOP.day_n_at(added, 0, time(10, 0))).date().isoformat() == "2026-11-24"


def test_next_weekday_is_strictly_after():
    monday_10 = SHOP.at(datetime(2026, 11, 23).date(), time(10, 0))
    assert SHOP.local(SHOP.next_weekday_at(monday_10, 0, time(10, 0))).day == 30
