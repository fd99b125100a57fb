"""The machine line at the head of every results table."""

from unet_runtime.machine import machine_info, machine_line


def test_machine_line_names_what_a_figure_depends_on_in_order():
    info = {"cpu": "CPU X", "cores": 2, "cpu_capability": "AVX2", "onednn_max_cpu_isa": "SSE41",
            "torch_threads": 1, "malloc": "system"}  # fmt: skip
    assert machine_line(info) == (
        "CPU X, 2 cores, torch AVX2, oneDNN ISA SSE41, 1 thread, malloc system"
    )
    one = {"cpu": "CPU Y", "cores": 1, "onednn_max_cpu_isa": "default", "torch_threads": 4}
    assert machine_line(one) == "CPU Y, 1 core, oneDNN ISA default, 4 threads"


def test_machine_line_of_this_process_counts_its_cores():
    info = machine_info()
    assert info["cores"] >= 1
    assert f" {info['cores']} core" in machine_line(info)
