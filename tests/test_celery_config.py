"""The Celery wiring: every task reaches exactly one queue, beat only schedules."""

from __future__ import annotations

from worker.celery_app import DISPATCH_QUEUE, SEND_QUEUE, celery_config


def test_each_queue_has_its_own_binding(settings):
    queues = celery_config(settings)["task_queues"]
    bindings = [(q.exchange.name, q.routing_key) for q in queues]
    assert sorted(q.name for q in queues) == sorted([DISPATCH_QUEUE, SEND_QUEUE])
    assert len(set(bindings)) == len(bindings), "two queues share a binding: tasks go twice"


def test_send_tasks_are_routed_to_the_send_queue(settings):
    assert celery_config(settings)["task_routes"]["sendfleet.send_batch"] == {"queue": SEND_QUEUE}


def test_acks_late_and_no_prefetch_backlog(settings):
    config = celery_config(settings)
    assert config["task_acks_late"] is True
    assert config["worker_prefetch_multiplier"] == 1
    assert config["accept_content"] == ["json"]


def test_beat_schedule_comes_from_settings(settings):
    schedule = celery_config(settings)["beat_schedule"]
    assert schedule["dispatch"]["schedule"] == settings.dispatch_interval_seconds
    assert schedule["dispatch"]["options"]["expires"] == settings.dispatch_interval_seconds
    assert schedule["recover"]["task"] == "sendfleet.recover"


def test_send_tasks_have_soft_and_hard_time_limits(settings):
    limits = celery_config(settings)["task_annotations"]["sendfleet.send_batch"]
    assert limits["soft_time_limit"] == settings.send_task_time_limit_seconds
    assert limits["time_limit"] > limits["soft_time_limit"]
    # Other tasks (dispatch, recovery, alerts) are not limited by the send tasks' limits.
    assert set(celery_config(settings)["task_annotations"]) == {"sendfleet.send_batch"}
