"""tuneforge: fine-tune large language models from one YAML file."""

import logging

__version__ = "0.1.0"


class _DropOptionalKernelNotice(logging.Filter):
    """bitsandbytes warns at import on AVX512-BF16 CPUs that the optional `kernels` package (a Hub download) is
    missing; it falls back to its own kernel. That line confused every CPU user, so this one message is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "gemm_4bit_forward from kernels-community" not in str(record.msg)


logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_DropOptionalKernelNotice())
