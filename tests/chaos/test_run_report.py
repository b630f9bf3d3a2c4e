"""Report, summary and timeline of a chaos run (pure parts, and the PNG drawn for real)."""

from orbitmq.chaos import report
from orbitmq.chaos.checker import Delivery, FaultWindow, MasterChange, Send, check
from orbitmq.chaos.timeline import per_second, plot_png, timeline_lines

T0 = 1000.0


def test_per_second_counts_fall_in_whole_seconds_from_the_start():
    assert per_second([1000.1, 1000.9, 1001.0, 1003.5, 999.0, 2000.0], T0, 1004.0) == [2, 1, 0, 1, 0]


def test_timeline_lines_merge_faults_skips_and_elections_in_time_order():
    lines = timeline_lines(T0, [FaultWindow("kill_master", 1010.0, 1014.5, ("broker-a-1",))],
                           [MasterChange("broker-a", 1, 1, 990.0), MasterChange("broker-a", 2, 2, 1012.0),
                            MasterChange("broker-a", 3, -1, 1020.0)],
                           [{"t": 1005.0, "event": "skip", "fault": "kill_learner", "why": "no learner"}])
    assert [line.split("s  ", 1)[1] for line in lines] == [
        "skipped kill_learner: no learner",
        "fault kill_master on broker-a-1 (healed after 4.5 s)",
        "broker-a epoch 2: master broker 2",
        "broker-a epoch 3: master nobody (election failed)"]
    assert lines[1].startswith("t+   10.00s")


def test_the_report_and_its_summary_carry_every_figure(tmp_path):
    sends = [Send(f"id{i}", T0 + i * 0.1, T0 + i * 0.1 + 0.01, i % 7 != 3, "", 0, "broker-a", 0, i,
                  1 if i < 40 else 2, "m1" if i < 40 else "m2") for i in range(100)]
    deliveries = [Delivery(s.id, "broker-a", 0, s.queue_offset) for s in sends if s.ok]
    faults = [FaultWindow("kill_master", T0 + 3, T0 + 5, ("broker-a-1",))]
    changes = [MasterChange("broker-a", 1, 1, T0 - 5), MasterChange("broker-a", 2, 2, T0 + 4)]
    figures = check(sends, deliveries, changes, faults, broker_ids={"m1": 1, "m2": 2})
    assert figures["acks_by_deposed_master"] == 0 and figures["failover_by_kind"]["kill_master"]["count"] == 1
    rep = report.build(figures, seed=7, duration_s=10, kinds=["kill_master"], planned=1, windows=faults,
                       elapsed_s=12.3, files={"picture": "x.png"}, extra={"cluster_whole_after_heal": False})
    assert rep["seed"] == 7 and rep["lost_acked"] == 0 and rep["faults"][0]["kind"] == "kill_master"
    text = report.summary(rep)
    assert "PASS" in text and "lost_acked 0" in text and "kill_master" in text and "LIVENESS" in text
    png = plot_png(tmp_path / "t.png", T0, T0 + 10, sends, faults, changes, title="test")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_every_fault_in_the_report_has_its_own_windows():
    sends = [Send(f"id{i}", T0 + i, T0 + i + 0.5, True, "", 0, "broker-a", 0, i, 1 if i < 5 else 2, "m") for i in range(10)]
    faults = [FaultWindow("kill_master", T0 + 3.2, T0 + 4, ("b1",)), FaultWindow("kill_learner", T0 + 7.1, T0 + 8)]
    rep = report.build(check(sends, [], [], faults), seed=1, duration_s=10, kinds=[], planned=2, windows=faults,
                       elapsed_s=1, files={})
    assert [(f["kind"], f["unavailable_s"], f["failover_s"]) for f in rep["faults"]] == [
        ("kill_master", 1.3, 2.3), ("kill_learner", 1.4, None)]
    assert "windows" not in rep
