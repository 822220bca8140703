"""oneDNN's 2-D convolutions as XLA FFI handlers, built against the system's oneDNN at install.

mnist-classifier finds this package by importing it, registers the handlers with
XLA (``jax.ffi.register_ffi_target``) and calls them in its CNNs' training steps on
the CPU (``mnist_classifier.accel.onednn``). Nothing here imports JAX.

Example:
    >>> import mnist_classifier_onednn as plugin
    >>> sorted(plugin.registrations())
    ['OnednnConv', 'OnednnConvGrad']
    >>> plugin.block() in (0, 8, 16), plugin.version().split(".")[0] in ("2", "3")
    (True, True)
"""

from mnist_classifier_onednn._convs import block, native_bfloat16, registrations, version

__all__ = ["block", "native_bfloat16", "registrations", "version"]
