"""Which exceptions a user can cause, and the one line ``modyolo <verb>`` prints for each.

The dispatcher (:mod:`modyolo.cli`) turns these into ``modyolo <verb>: error: <line>`` and exit
code 1, with the full traceback logged at DEBUG (the run's ``log.txt``; the terminal too with
``--verbose``; ``MODYOLO_DEBUG=1`` re-raises). Anything else is a bug and keeps its traceback.

User-caused: the project's own errors (all ValueError / KeyError subclasses: bad YAML, config,
hyp, checkpoint, metadata, export, registry), missing / unreadable / read-only paths and a full
disk (OSError), and corrupt model files: a garbage or truncated ``.onnx`` (protobuf
``DecodeError``, onnxruntime's ``InvalidProtobuf``) or TorchScript archive (torch's zip reader).
"""

from __future__ import annotations

import errno

_FIX_BY_ERRNO = {
    errno.EROFS: "the file system is read-only; choose a writable folder (e.g. --project /tmp/runs)",
    errno.EACCES: "permission denied; choose a folder you can write to (e.g. --project) or fix its permissions",
    errno.EPERM: "operation not permitted; choose a folder you can write to or fix its permissions",
    errno.ENOSPC: "no space left on the device; free some space (a training run resumes with --resume)",
    errno.ENOENT: "no such file or folder; check the path",
    errno.EISDIR: "is a folder, expected a file",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EDQUOT: "disk quota exceeded; free some space",
}

_CORRUPT_MODEL_MARKERS = (
    "PytorchStreamReader",  # torch.jit.load / torch.load of a truncated or non-zip archive
    "InvalidProtobuf",
    "INVALID_PROTOBUF",
    "Protobuf parsing failed",  # onnxruntime
    "Error parsing message",  # protobuf DecodeError text
    "failed to load model",
    "Load model from",
)


def _os_message(e: OSError) -> str:
    text = e.strerror or str(e)
    name = e.filename
    if name is not None and str(name) not in text:
        text = f"{name}: {text}"
    fix = _FIX_BY_ERRNO.get(e.errno or -1)
    if fix and fix.split(";")[0] not in text.lower():
        text = f"{text} ({fix})"
    return text


def user_message(e: BaseException, model_path: object = None) -> str | None:
    """One line for an error the user caused (with the path and the fix), or None for a bug.

    ``model_path``: the verb's ``--weights`` (named in a corrupt-model message, whose library
    error does not say which file it was reading).
    """
    cls = type(e)
    if isinstance(e, OSError):
        return _os_message(e)
    if cls.__name__ == "DecodeError" or cls.__module__.startswith(("google.protobuf", "onnxruntime", "onnx")):
        where = f"{model_path}: " if isinstance(model_path, str) and model_path else ""
        return f"{where}not a valid ONNX model ({cls.__name__}: {e}); re-export it with 'modyolo export'"
    if isinstance(e, RuntimeError) and any(m in str(e) for m in _CORRUPT_MODEL_MARKERS):
        first = str(e).strip().splitlines()[0] if str(e).strip() else cls.__name__
        return (
            f"not a readable model file ({first}); the file is truncated or of another format: "
            "re-export or re-download it"
        )
    if isinstance(e, KeyError) and len(e.args) == 1 and isinstance(e.args[0], str):
        return e.args[0]  # str(KeyError) would quote the message
    if isinstance(e, (ValueError, KeyError)):
        return str(e)
    return None
