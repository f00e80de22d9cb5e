"""Instruments for learners: see what a file holds, which tokens carry loss, where the memory goes.

* ``inspect_path`` / ``format_report`` (``minift inspect PATH``): every tensor of a checkpoint, a Hugging Face
  directory, a PEFT adapter or a GGUF file, from the headers alone (``minift.inspect.files``).
* ``show_batch``: one row per token of a batch — id, text, mask, position, label and why it is −100, where a
  classifier reads — with warnings for the classic mistakes (``minift.inspect.tokens``).
"""
from .files import (
    InspectError, adapter_scaling, add_cli_arguments, compare_with_base, format_report, human_bytes, inspect_path,
    read_safetensors_header, run_from_args,
)

__all__ = ["InspectError", "adapter_scaling", "add_cli_arguments", "compare_with_base", "format_report",
           "human_bytes", "inspect_path", "read_safetensors_header", "run_from_args"]
from .tokens import TokenTable, TokenViewWarning, show_batch

__all__ += ["TokenTable", "TokenViewWarning", "show_batch"]
from .memory import MemoryReport, memory_report

__all__ += ["MemoryReport", "memory_report"]
from .trace import Trace

__all__ += ["Trace"]
