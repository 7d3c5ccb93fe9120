"""State-dict conversion of lattice.convert (private; import from lattice.convert)."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

import numpy as np

from .convert import (
    SOURCES,
    _choice,
    _is_torch,
    _reshape,
    _shape,
    from_minkowski,
    from_spconv,
    from_torchsparse,
)

_RULE_KEYS = {"kernel_size", "kind", "stride", "layout", "index_order", "version", "transposed", "pointwise_quirk"}
_RULE_KEYS |= {"generative", "dilation", "kmap_mode", "allow_shift", "name", "skip"}
_BN_PARAMS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


@dataclass
class ConversionReport:
    """What :func:`convert_state_dict` did: ``converted`` and ``passed`` (copied unchanged) map source keys to
    lattice keys, ``skipped`` lists dropped keys, ``unmapped`` maps keys left out to the reason."""

    converted: dict = field(default_factory=dict)
    passed: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)
    unmapped: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every entry was converted, passed or deliberately skipped."""
        return not self.unmapped


def _rule_for(key: str, rules: dict, op: str) -> dict:
    for pattern, options in rules.items():
        if fnmatch.fnmatchcase(key, pattern):
            if not isinstance(options, dict):
                raise TypeError(
                    f"[{op}] argument 'rules': rule {pattern!r} must be a dict, got {type(options).__name__}"
                )
            unknown = set(options) - _RULE_KEYS
            if unknown:
                raise ValueError(
                    f"[{op}] argument 'rules': rule {pattern!r} has unknown options {sorted(unknown)}; "
                    f"allowed: {sorted(_RULE_KEYS)}"
                )
            return options
    return {}


def _cube_kernel(volume: int):
    side = round(volume ** (1.0 / 3.0))
    for s in (side - 1, side, side + 1):
        if s >= 1 and s**3 == volume:
            return (s, s, s)
    return None


def _strip_minkowski_wrapper(key: str) -> str:
    # MinkowskiBatchNorm keeps a torch BatchNorm1d as '.bn', MinkowskiLinear a
    # torch Linear as '.linear'; lattice.torch's modules hold the parameters directly.
    parts = key.split(".")
    if len(parts) >= 2 and parts[-2] in ("bn", "linear") and parts[-1] in _BN_PARAMS:
        return ".".join(parts[:-2] + parts[-1:])
    return key


def _convert_entry(key, value, source, rule, keys, strip_wrappers):
    """(lattice key, value, 'converted' | 'passed') or (reason, None, 'unmapped') for one state-dict entry."""
    is_array = _is_torch(value) or isinstance(value, np.ndarray)
    ndim = len(_shape(value)) if is_array else 0
    new_key = rule.get("name")
    last = key.split(".")[-1]
    if source == "spconv" and is_array and ndim == 5:
        options = {o: rule[o] for o in ("kind", "layout", "stride", "pointwise_quirk", "index_order") if o in rule}
        return new_key or key, from_spconv(value, **options), "converted"
    if source != "spconv" and last == "kernel":
        if not is_array or ndim not in (2, 3):
            return f"a '.kernel' entry must be a 2-D or 3-D array, got {ndim}-D", None, "unmapped"
        ks = rule.get("kernel_size")
        if ks is None:
            ks = (1, 1, 1) if ndim == 2 else _cube_kernel(_shape(value)[0])
        if ks is None:
            return f"kernel volume {_shape(value)[0]} is not a cube; give its kernel_size in a rule", None, "unmapped"
        transposed = rule.get("transposed", False)
        if source == "torchsparse":
            options = {
                o: rule[o] for o in ("stride", "generative", "dilation", "kmap_mode", "allow_shift") if o in rule
            }
            weight = from_torchsparse(
                value, kernel_size=ks, version=rule.get("version", "2.1"), transposed=transposed, **options
            )
        else:
            weight = from_minkowski(value, kernel_size=ks, transposed=transposed)
        return new_key or key[: -len("kernel")] + "weight", weight, "converted"
    conv_bias = source == "minkowski" and last == "bias" and key[: -len("bias")] + "kernel" in keys
    if conv_bias and ndim == 2 and _shape(value)[0] == 1:  # MinkowskiConvolution's bias is (1, C_out)
        return new_key or key, _reshape(value, (_shape(value)[1],)), "converted"
    if new_key is None and source == "minkowski" and strip_wrappers:
        new_key = _strip_minkowski_wrapper(key)
    return new_key or key, value, "passed"


def convert_state_dict(state_dict, source, rules=None, *, strip_wrappers=True):
    """Convert a peer network's state dict to lattice.torch / lattice.nn weights.

    - spconv: every 5-D tensor is a convolution weight (:func:`from_spconv`,
      'KRSC', kind 'subm', stride 1 unless a rule says otherwise, e.g.
      ``{"kind": "conv", "stride": 2}`` for a strided 1x1x1); its key is kept.
    - torchsparse / minkowski: ``*.kernel`` (3-D, or 2-D for 1x1x1) goes
      through :func:`from_torchsparse` / :func:`from_minkowski` and becomes
      ``*.weight``; the kernel size comes from the rule, else from K when it is
      a cube (27, 8, 1, ...), else the entry is unmapped. ME's conv bias
      ``(1, C_out)`` becomes ``(C_out,)``; with ``strip_wrappers`` the ``.bn.``
      / ``.linear.`` of MinkowskiBatchNorm / MinkowskiLinear leave the key.
    - ``*.num_batches_tracked`` is skipped (``{"skip": False}`` keeps it);
      everything else (batch norm, torch.nn.Linear, biases) passes unchanged.

    Args:
        state_dict: mapping of names to NumPy arrays or PyTorch tensors.
        source: 'spconv', 'torchsparse' or 'minkowski'.
        rules: optional {fnmatch pattern on source keys (first match wins):
            options}; options ``kernel_size``, ``kind``, ``stride``, ``layout``,
            ``index_order``, ``pointwise_quirk``, ``version``, ``generative``,
            ``dilation``, ``kmap_mode``, ``allow_shift``, ``transposed`` (as the
            single-weight converters), ``name`` (the lattice key), ``skip``.

    Returns:
        (new_state_dict, ConversionReport); unmapped entries are left out and
        reported, not raised.

    Raises:
        ValueError / TypeError: unknown source, malformed rules, or a rule's
            options that do not fit its entry.
    """
    op = "convert_state_dict"
    _choice(source, SOURCES, op, "source")
    if rules is None:
        rules = {}
    if not isinstance(rules, dict):
        raise TypeError(f"[{op}] argument 'rules': expected a dict of pattern -> options, got {type(rules).__name__}")
    if not hasattr(state_dict, "items"):
        raise TypeError(f"[{op}] argument 'state_dict': expected a mapping, got {type(state_dict).__name__}")
    keys = set(state_dict.keys())
    out = {}
    report = ConversionReport()
    for key, value in state_dict.items():
        rule = _rule_for(key, rules, op)
        # lattice's BatchNorm has no num_batches_tracked buffer (its momentum is always a number).
        if rule.get("skip", key.split(".")[-1] == "num_batches_tracked"):
            report.skipped.append(key)
            continue
        target, result, outcome = _convert_entry(key, value, source, rule, keys, strip_wrappers)
        if outcome != "unmapped" and target in out:
            target, outcome = f"its lattice name {target!r} is already taken; rename it with a rule", "unmapped"
        if outcome == "unmapped":
            report.unmapped[key] = target
            continue
        out[target] = result
        getattr(report, outcome)[key] = target
    return out, report
