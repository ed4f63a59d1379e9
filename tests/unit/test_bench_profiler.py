"""The bench's profile summary: where each py-spy sample's time is booked."""

from __future__ import annotations

from pathlib import Path

from bench.profiler import layer, summarise


def test_a_frame_is_booked_to_the_package_its_file_belongs_to() -> None:
    assert layer("step_command (services/router/routing/commands.py:33)") == "flowline"
    assert layer("decide (/work/main/services/router/routing/decide.py:1)") == "flowline"
    assert layer("send (aiokafka/producer/producer.py:12)") == "aiokafka"
    venv = "/w/.venv/lib/python3.11/site-packages"
    assert layer(f"send ({venv}/aiokafka/producer/producer.py:12)") == "aiokafka"
    assert layer(f"get ({venv}/mode/services.py:3)") == "mode"  # not flowline's `services`
    assert layer("iterencode (/usr/lib/python3.11/json/encoder.py:205)") == "stdlib json"
    assert layer("replace (dataclasses.py:1453)") == "stdlib dataclasses"
    assert layer("Worker.execute_from_commandline (mode/worker.py:279)") \
        == "event loop (native, idle)"


def test_the_summary_gives_each_layer_its_share_of_the_samples(tmp_path: Path) -> None:
    collapsed = tmp_path / "stacks.collapsed"
    collapsed.write_text(
        "process 1;thread 2;run (mode/worker.py:1);route (services/router/app.py:9) 30\n"
        "process 1;thread 2;run (mode/worker.py:1);send (aiokafka/producer/producer.py:1) 50\n"
        "process 1;thread 3;ServiceThread._start_thread (mode/threads.py:1) 20\n")
    text = summarise(collapsed)
    layers = text.split("self time by layer", 1)[1].split("\n\n", 1)[0]
    assert "  50.0%  aiokafka" in layers
    assert "  30.0%  flowline" in layers
    assert "  20.0%  event loop (native, idle)" in layers
    assert layers.index("aiokafka") < layers.index("flowline")  # largest first
