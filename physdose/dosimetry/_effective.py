"""Effective dose (ICRP Publication 103) from organ doses, and the rough DLP-based estimate for CT."""

import warnings
from collections.abc import Mapping

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_nonnegative, is_concrete
from .._frozen import FrozenDict
from ._organ import OrganDoses

#: ICRP Publication 103 (2007), Table 3: tissue weighting factors w_T (they sum to 1). The
#: breast weight applies to the sex-averaged breast dose, "gonads" to the mean of testes and
#: ovaries, "remainder" to the remainder dose (see REMAINDER_TISSUES).
TISSUE_WEIGHTS = FrozenDict(
    {
        "red_bone_marrow": 0.12,
        "colon": 0.12,
        "lung": 0.12,
        "stomach": 0.12,
        "breast": 0.12,
        "remainder": 0.12,
        "gonads": 0.08,
        "bladder": 0.04,
        "oesophagus": 0.04,
        "liver": 0.04,
        "thyroid": 0.04,
        "bone_surface": 0.01,
        "brain": 0.01,
        "salivary_glands": 0.01,
        "skin": 0.01,
    }
)

#: ICRP Publication 103, Table 3 footnote: the 14 remainder tissues, 13 in each sex (prostate
#: male only, uterus/cervix female only). The remainder equivalent dose of a sex is the
#: arithmetic mean of its 13 remainder tissues' equivalent doses (ICRP 103, Table 3 footnote).
REMAINDER_TISSUES = (
    "adrenals",
    "extrathoracic_region",
    "gall_bladder",
    "heart",
    "kidneys",
    "lymphatic_nodes",
    "muscle",
    "oral_mucosa",
    "pancreas",
    "prostate",
    "small_intestine",
    "spleen",
    "thymus",
    "uterus",
)
_MALE_ONLY, _FEMALE_ONLY = ("prostate",), ("uterus",)

#: Organ names (physdose phantoms, TG-195 Case 5, common aliases) -> ICRP 103 tissue, in order
#: of preference: where a phantom has several names for one tissue, the first present is used.
#: "skeleton" / "cortical_bone" stand in for the bone surface (endosteum) when a phantom has no
#: endosteal layer; in the kerma approximation their dose exceeds the endosteal dose at low
#: energies (bone's larger mu_en), an overestimate carrying 1 % of the weight.
ORGAN_ALIASES = FrozenDict(
    {
        "red_bone_marrow": ("red_bone_marrow", "red_marrow", "active_marrow", "bone_marrow"),
        "colon": ("colon", "large_intestine"),
        "lung": ("lungs", "lung"),
        "stomach": ("stomach", "stomach_wall"),
        "breast": ("breasts", "breast"),
        "gonads": ("gonads", "testes", "ovaries"),
        "bladder": ("bladder", "urinary_bladder", "bladder_wall"),
        "oesophagus": ("oesophagus", "esophagus"),
        "liver": ("liver",),
        "thyroid": ("thyroid",),
        "bone_surface": ("bone_surface", "endosteum", "skeleton", "cortical_bone"),
        "brain": ("brain",),
        "salivary_glands": ("salivary_glands",),
        "skin": ("skin",),
        "adrenals": ("adrenals", "adrenal"),
        "extrathoracic_region": ("extrathoracic_region", "et_region", "extrathoracic"),
        "gall_bladder": ("gall_bladder", "gallbladder"),
        "heart": ("heart", "heart_wall"),
        "kidneys": ("kidneys", "kidney"),
        "lymphatic_nodes": ("lymphatic_nodes", "lymph_nodes"),
        "muscle": ("muscle",),
        "oral_mucosa": ("oral_mucosa",),
        "pancreas": ("pancreas",),
        "prostate": ("prostate",),
        "small_intestine": ("small_intestine",),
        "spleen": ("spleen",),
        "thymus": ("thymus",),
        "uterus": ("uterus", "uterus_cervix", "cervix"),
    }
)

#: AAPM Report 96 (2008), Table 4, adult column: effective dose per DLP, k (mSv / (mGy cm)),
#: from the European guidelines on quality criteria for CT (EUR 16262) and Shrimpton et al.
#: (NRPB-W67, 2005; Shrimpton, Hillier et al. 2006), computed with ICRP 60 weights.
DLP_K_FACTORS_MSV_PER_MGY_CM = FrozenDict(
    {
        "head_and_neck": 0.0031,
        "head": 0.0021,
        "neck": 0.0059,
        "chest": 0.014,
        "abdomen_and_pelvis": 0.015,
        "trunk": 0.015,
    }
)


class EffectiveDose(eqx.Module):
    """Effective dose and its parts.

    Attributes:
        effective_dose_sv: E = sum_T w_T H_T (Sv), shape ().
        sigma_sv: its standard uncertainty (Sv), shape (); NaN where the organ doses had none.
        tissues: the weighted ICRP tissues, in TISSUE_WEIGHTS order (static).
        equivalent_dose_sv: H_T of each tissue (Sv; sex-averaged when both sexes are given),
            shape (t,); NaN for a missing tissue.
        weights: w_T applied to each tissue (ICRP 103, renormalised over the tissues present
            when some are missing), shape (t,).
        organs: ICRP tissue -> the organ name(s) used for it, per sex (static).
        missing: ICRP tissues (including remainder tissues) for which no organ dose was
            given (static).
    """

    effective_dose_sv: Float[Array, ""]
    sigma_sv: Float[Array, ""]
    tissues: tuple[str, ...] = eqx.field(static=True)
    equivalent_dose_sv: Float[Array, " t"]
    weights: Float[Array, " t"]
    organs: FrozenDict = eqx.field(static=True)
    missing: tuple[str, ...] = eqx.field(static=True)


def _as_table(name: str, doses, aliases) -> tuple[dict[str, Array], dict[str, Array], Array | None, str | None]:
    """Organ doses as (organ -> dose, organ -> sigma, samples (s, o) or None, sex)."""
    if isinstance(doses, OrganDoses):
        keep = [i for i, n in enumerate(doses.names) if not _nan(doses.dose_gy[i])]
        d = {doses.names[i]: doses.dose_gy[i] for i in keep}
        s = {doses.names[i]: doses.sigma_gy[i] for i in keep}
        samples = None
        if doses.samples_gy is not None:
            samples = {doses.names[i]: doses.samples_gy[:, i] for i in keep}
        return d, s, samples, doses.sex
    if not isinstance(doses, Mapping):
        raise TypeError(f"{name} must be OrganDoses or a mapping organ name -> dose (Gy), got {type(doses).__name__}")
    d = {}
    for organ, value in doses.items():
        v = jnp.asarray(value, dtype=jnp.result_type(float))
        if v.ndim != 0:
            raise ValueError(f"{name}[{organ!r}] must be a scalar dose (Gy), got shape {v.shape}")
        check_nonnegative(f"{name}[{organ!r}]", v)
        d[organ] = v
    return d, {k: jnp.asarray(jnp.nan, v.dtype) for k, v in d.items()}, None, None


def _nan(v) -> bool:
    return is_concrete(v) and bool(np.isnan(np.asarray(v)))


def _lookup(table: dict, tissue: str, sex: str | None, aliases: Mapping) -> str | None:
    """The organ of `table` that stands for ICRP `tissue` (user aliases first)."""
    for organ, t in aliases.items():
        if t == tissue and organ in table:
            return organ
    names = ORGAN_ALIASES[tissue]
    if tissue == "gonads" and sex is not None:
        names = ("gonads", "testes") if sex == "male" else ("gonads", "ovaries")
    return next((n for n in names if n in table), None)


def _remainder_for(sex: str | None) -> tuple[str, ...]:
    if sex == "male":
        return tuple(t for t in REMAINDER_TISSUES if t not in _FEMALE_ONLY)
    if sex == "female":
        return tuple(t for t in REMAINDER_TISSUES if t not in _MALE_ONLY)
    return REMAINDER_TISSUES


def _one_sex(doses, sex, aliases):
    """Per tissue, (H_T, sigma_T, samples_T) for one phantom, the organs used and the missing tissues."""
    d, s, samples, own_sex = doses
    sex = sex or own_sex
    out, used, missing = {}, {}, []
    for tissue in TISSUE_WEIGHTS:
        if tissue == "remainder":
            continue
        organ = _lookup(d, tissue, sex, aliases)
        if organ is None:
            missing.append(tissue)
            continue
        out[tissue] = (d[organ], s[organ], None if samples is None else samples[organ])
        used[tissue] = organ
    present, rem_missing = [], []
    for tissue in _remainder_for(sex):
        organ = _lookup(d, tissue, sex, aliases)
        if organ is None:
            if sex is not None or tissue not in _MALE_ONLY + _FEMALE_ONLY:
                rem_missing.append(tissue)
            continue
        present.append((d[organ], s[organ], None if samples is None else samples[organ]))
        used[tissue] = organ
    if present:
        # ICRP 103: the remainder dose is the arithmetic mean over the remainder tissues
        # (here over those present); its uncertainty assumes fully correlated organ errors
        out["remainder"] = (
            jnp.mean(jnp.stack([p[0] for p in present])),
            jnp.mean(jnp.stack([p[1] for p in present])),
            None if samples is None else jnp.mean(jnp.stack([p[2] for p in present]), axis=0),
        )
    else:
        missing.append("remainder")
    return out, used, missing + rem_missing, sex


def effective_dose(
    organ_doses: OrganDoses | Mapping[str, Float[ArrayLike, ""]],
    female_organ_doses: OrganDoses | Mapping[str, Float[ArrayLike, ""]] | None = None,
    *,
    sex: str | None = None,
    aliases: Mapping[str, str] | None = None,
) -> EffectiveDose:
    """Effective dose E = sum_T w_T H_T with the ICRP Publication 103 tissue weighting factors.

    Photons only: the radiation weighting factor is 1, so the equivalent dose H_T (Sv) equals
    the mean absorbed dose D_T (Gy) of tissue T.

    * Tissues and weights: `TISSUE_WEIGHTS` (ICRP 103 Table 3). Organ names map to ICRP
      tissues through `ORGAN_ALIASES` (physdose phantoms' names: lungs, stomach, colon,
      red_marrow, breasts, gonads, bladder, liver, oesophagus, thyroid, skin, skeleton
      (standing in for the bone surface), brain, ...; TG-195 names: lung, large_intestine,
      esophagus, breast, adrenal, ...), extended by `aliases`.
    * Remainder (w = 0.12): the arithmetic mean of the equivalent doses of the 13 remainder
      tissues of the sex (`REMAINDER_TISSUES`: prostate for males, uterus/cervix for
      females), over those present when some are missing.
    * Both sexes (ICRP 103's sex-averaged definition): E = sum_T w_T (H_T^M + H_T^F) / 2, with each
      sex's own remainder; `organ_doses` is then the male's. With one phantom, E is that
      phantom's sex-specific value (not the sex-averaged ICRP quantity).
    * Missing tissues: a UserWarning names them; their weight is spread over the tissues
      present (weights renormalised to sum 1), i.e. a missing tissue is assigned the
      weighted mean dose of the others. A uniform dose D therefore always gives E = D.
    * Uncertainty: from the organ samples when the organ doses carry them (exact); else
      sigma_E = sum_T w_T sigma_T, a conservative bound assuming fully correlated organ
      errors (organ doses from one MC run or one network share their errors' sign).

    Args:
        organ_doses: organ doses (Gy) of one phantom (`OrganDoses` or organ name -> Gy), or
            of the male phantom when `female_organ_doses` is given.
        female_organ_doses: organ doses of the female phantom, for the sex-averaged E.
        sex: "male" or "female" for a single phantom whose OrganDoses do not say (it picks
            the remainder tissue list and the gonad names).
        aliases: extra organ name -> ICRP tissue name mappings (these take precedence).

    Returns:
        EffectiveDose.

    Raises:
        ValueError: an unknown `sex`, an alias to an unknown ICRP tissue, a negative or
            non-scalar organ dose, no tissue at all, or `sex` contradicting the two-sex call.

    Examples:
        >>> whole_body = {names[0]: 0.010 for names in ORGAN_ALIASES.values()}  # every tissue, 10 mGy
        >>> round(float(effective_dose(whole_body).effective_dose_sv), 6)
        0.01
    """
    if sex not in (None, "male", "female"):
        raise ValueError(f'sex must be "male", "female" or None, got {sex!r}')
    aliases = dict(aliases or {})
    known = set(TISSUE_WEIGHTS) | set(REMAINDER_TISSUES)
    bad = {k: v for k, v in aliases.items() if v not in known}
    if bad:
        raise ValueError(f"aliases map to unknown ICRP tissues {bad}; known tissues: {sorted(known)}")
    first = _as_table("organ_doses", organ_doses, aliases)
    if female_organ_doses is None:
        parts = [_one_sex(first, sex, aliases)]
    else:
        if sex not in (None, "male"):
            raise ValueError(
                f'with female_organ_doses, organ_doses are the male\'s; sex must be None or "male", got {sex!r}'
            )
        second = _as_table("female_organ_doses", female_organ_doses, aliases)
        for label, table, expected in (("organ_doses", first, "male"), ("female_organ_doses", second, "female")):
            if table[3] not in (None, expected):
                raise ValueError(f"{label} come from a {table[3]} phantom, expected {expected}")
        parts = [_one_sex(first, "male", aliases), _one_sex(second, "female", aliases)]

    tissues = tuple(TISSUE_WEIGHTS)
    h, sig, smp, w, used, missing = [], [], [], [], {}, []
    use_samples = all(p[0] and all(v[2] is not None for v in p[0].values()) for p in parts)
    for tissue in tissues:
        values = [p[0][tissue] for p in parts if tissue in p[0]]
        if not values:
            missing.append(tissue)
            h.append(jnp.nan)
            sig.append(jnp.nan)
            smp.append(None)
            w.append(0.0)
            continue
        # sex-averaged equivalent dose: the mean over the sexes for which it is known
        h.append(jnp.mean(jnp.stack([v[0] for v in values])))
        sig.append(jnp.mean(jnp.stack([v[1] for v in values])))
        smp.append(jnp.mean(jnp.stack([v[2] for v in values]), axis=0) if use_samples else None)
        w.append(TISSUE_WEIGHTS[tissue])
    for p in parts:
        for t in p[2]:
            label = t if len(parts) == 1 else f"{t} ({p[3]})"
            if label not in missing and t not in missing:
                missing.append(label)
        for t, organ in p[1].items():
            used.setdefault(t, {})[p[3] or "any"] = organ
    if not any(wi > 0 for wi in w):
        raise ValueError("no organ of organ_doses maps to an ICRP 103 tissue; see ORGAN_ALIASES or pass aliases")
    weights = np.asarray(w, np.float64)
    if missing:
        lost = float(sum(TISSUE_WEIGHTS[t] for t, wi in zip(tissues, w) if wi == 0))
        warnings.warn(
            f"effective_dose: no organ dose for ICRP 103 tissues {missing}"
            + (f"; their weight ({lost:.2f}) is spread over the tissues present" if lost > 0 else "")
            + " (the remainder is the mean of the remainder tissues present)",
            UserWarning,
            stacklevel=2,
        )
    weights = weights / weights.sum()
    dtype = jnp.result_type(float)
    wj = jnp.asarray(weights, dtype)
    hv = jnp.stack([jnp.asarray(v, dtype) for v in h])
    sv = jnp.stack([jnp.asarray(v, dtype) for v in sig])
    present = wj > 0
    e = jnp.sum(jnp.where(present, wj * hv, 0.0))
    if use_samples:
        e_samples = sum(wi * s for wi, s in zip(weights, smp) if s is not None)
        sigma = jnp.std(e_samples, ddof=1) if e_samples.shape[0] > 1 else jnp.asarray(jnp.nan, dtype)
    else:
        sigma = jnp.sum(jnp.where(present, wj * sv, 0.0))
    organs = FrozenDict({t: FrozenDict(v) for t, v in used.items()})
    return EffectiveDose(e, sigma, tissues, hv, wj, organs, tuple(missing))


def dlp_to_effective_dose(dlp_mgy_cm: Float[ArrayLike, "*b"], region: str) -> Float[Array, "*b"]:
    """Effective dose (mSv) from a CT dose-length product by a region's k-factor: E = k x DLP.

    A rough, population-level estimate for a standard-sized adult (AAPM Report 96 Table 4,
    adult k-factors from EUR 16262 / Shrimpton et al. 2005, based on ICRP 60 weights): it
    ignores patient size, scan range within the region, tube voltage and the ICRP 103
    weights, and can be off by tens of per cent for an individual. Prefer organ doses and
    `effective_dose` where a dose map exists.

    Args:
        dlp_mgy_cm: dose-length product (mGy cm).
        region: one of `DLP_K_FACTORS_MSV_PER_MGY_CM`: "head", "head_and_neck", "neck",
            "chest", "abdomen_and_pelvis", "trunk".

    Returns:
        Effective dose (mSv), the shape of `dlp_mgy_cm`.

    Raises:
        ValueError: unknown `region` or a negative DLP.

    Examples:
        >>> float(dlp_to_effective_dose(500.0, "chest"))
        7.0
    """
    if region not in DLP_K_FACTORS_MSV_PER_MGY_CM:
        raise ValueError(f"unknown region {region!r}; known regions: {list(DLP_K_FACTORS_MSV_PER_MGY_CM)}")
    check_nonnegative("dlp_mgy_cm", dlp_mgy_cm)
    return jnp.asarray(dlp_mgy_cm, dtype=jnp.result_type(float)) * DLP_K_FACTORS_MSV_PER_MGY_CM[region]
