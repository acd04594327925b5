"""Turns a step's content into the text a customer receives: variants by tag, then ``{variables}``."""

from __future__ import annotations

import functools
import string
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from sop_graphs.spec import Catalog, CouponStep, GroupInviteStep, MessageStep, Variant

BASE_VARIABLES = frozenset({"name", "owner", "shop"})
GROUP_VARIABLES = frozenset({"group_name", "group_qr", "group_rules"})
COUPON_VARIABLES = frozenset({"coupon_name", "coupon_amount", "coupon_threshold", "coupon_valid_days"})
VARIABLES = BASE_VARIABLES | GROUP_VARIABLES | COUPON_VARIABLES


def variables_for(kind: str) -> frozenset[str]:
    """Variables a step of ``kind`` can fill: coupon details only in coupon steps, group ones in invites."""
    return BASE_VARIABLES | {"group_invite": GROUP_VARIABLES, "coupon": COUPON_VARIABLES}.get(kind, frozenset())


def placeholders(text: str) -> set[str]:
    """The ``{names}`` a template uses; raises ValueError on unbalanced braces and on any field that is not a
    plain ``{name}``: no format spec (``{name:>999999999}`` would render a gigabyte), conversion (``{name!r}``),
    attribute or index access (``{name.attr}``, ``{name[0]}``) and no positional ``{}``. Write ``{{`` and ``}}``
    for literal braces."""
    names = set()
    for _, name, spec, conversion in string.Formatter().parse(text):
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            field = name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            raise ValueError(f"{{{field}}} is not a plain {{name}} placeholder: format specs, conversions, "
                             "attribute/index access and positional {} are not allowed")
        names.add(name)
    return names


def choose_variant(variants: Iterable[Variant], tags: set[str]) -> Variant | None:
    """The first variant whose tag condition holds for ``tags``."""
    for variant in variants:
        if variant.tags_all and not set(variant.tags_all) <= tags:
            continue
        if variant.tags_any and not set(variant.tags_any) & tags:
            continue
        return variant
    return None


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return ""


def _text(value: Any) -> str:
    """A value as a customer reads it: a float without a trailing ``.0`` or binary noise (``99``, ``0.3``)."""
    return f"{value:.15g}" if isinstance(value, float) else str(value)


def substitute(template: str, values: Mapping[str, Any]) -> str:
    """``template`` with each ``{name}`` replaced by the value's text. Only plain names are ever looked up: a
    format spec or conversion is ignored and an attribute/index/positional field renders empty, so a template
    that slipped past validation can neither pad to gigabytes nor reach into an object. Raises ValueError on
    unbalanced braces and ``values[name]``'s KeyError for a missing name."""
    parts: list[str] = []
    for literal, name, _spec, _conversion in string.Formatter().parse(template):
        parts.append(literal)
        if name is not None and name.isidentifier():
            parts.append(_text(values[name]))
    return "".join(parts)


def fill(template: str, values: Mapping[str, Any]) -> str:
    """Fill ``{variables}``; an unknown value renders empty rather than leaking braces."""
    return substitute(template, _Blank(values))


def render_step(step: Any, catalog: Catalog, tags: set[str], values: Mapping[str, Any]) -> dict[str, Any]:
    """Payload of an outbound step: ``text`` plus material/group/coupon details."""
    payload: dict[str, Any] = {}
    merged = dict(values)
    if isinstance(step, GroupInviteStep):
        group = catalog.groups[step.group]
        merged |= {"group_name": group.name, "group_qr": group.qr_url, "group_rules": group.rules}
        payload |= {"group": step.group, "qr_url": group.qr_url}
    if isinstance(step, CouponStep):
        campaign = catalog.campaigns[step.campaign]
        merged |= {"coupon_name": campaign.name, "coupon_amount": f"{campaign.amount:g}",
                   "coupon_threshold": f"{campaign.threshold:g}", "coupon_valid_days": campaign.valid_days}
        payload |= {"campaign": step.campaign}
    text: str | None = getattr(step, "text", None)
    material_id: str | None = getattr(step, "material", None)
    if isinstance(step, MessageStep):
        variant = choose_variant(step.variants, tags)
        if variant is not None:
            text, material_id = variant.text, variant.material
            payload["variant"] = variant.material or "text"
    if material_id is not None:
        material = catalog.materials[material_id]
        payload |= {"material": material_id, "material_type": material.type, "title": material.title}
        if material.url:
            payload["url"] = material.url
        text = material.text
    payload["text"] = fill(text or "", merged)
    return payload


def reply_text(catalog: Catalog, template: str, /, **values: Any) -> str:
    """A 话术 template of the library's ``replies.yaml`` with the persona's brand and advisor title filled; a
    shop's library that leaves a template out gets the bundled one (its persona still fills it)."""
    persona = catalog.persona
    text = catalog.replies.get(template) or bundled_replies()[template]
    return substitute(text, {"brand": persona.brand, "advisor": persona.advisor_title, **values})


@functools.cache
def bundled_replies() -> dict[str, str]:
    """The 话术 templates of the bundled library, the fallback of a shop's own ``replies.yaml``."""
    path = Path(__file__).resolve().parent / "library" / "replies.yaml"
    return {str(k): str(v) for k, v in (yaml.safe_load(path.read_text("utf-8")) or {}).items()}
