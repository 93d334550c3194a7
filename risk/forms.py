"""Admin forms for the risk policy and the system mode.

The policy form has one field per policy setting (risk/domain/policy.py: POLICY_FIELDS),
prefilled with the version in force. Lists are comma-separated text, sector caps one
`sector=pct` line each. clean() runs the domain's own validation so every bad field gets its
message next to it; the admin then saves through policy_update (a new version + policy.updated).
"""
from __future__ import annotations

from dataclasses import fields as dc_fields
from typing import Any

from django import forms

from risk.domain.modes import MIN_REASON_CHARS, ModeTransitionError, check_transition
from risk.domain.policy import POLICY_FIELDS, Policy, PolicyError, validate_policy_values
from risk.models import ModeChange, RiskPolicy

LIST_FIELDS = ("symbol_allowlist", "symbol_denylist")
SECTOR_FIELD = "sector_exposure_pct"

HELP = {
    "max_leverage": "1..125",
    "max_position_usd": "USD per position",
    "max_daily_drawdown_pct": "% of the day's starting equity: no new entries for the rest of the UTC day",
    "emergency_drawdown_pct": "% drawdown that triggers the emergency stop (>= the daily limit)",
    "emergency_consecutive_losses": "losses in a row that switch the system to REDUCE_ONLY",
    "min_confidence": "0..1",
    "symbol_allowlist": "comma-separated unified symbols; empty: every symbol allowed",
    "symbol_denylist": "comma-separated unified symbols",
    "max_total_exposure_pct": "gross positions + open entry orders, % of equity",
    SECTOR_FIELD: "one `sector=pct` per line (% of equity); sectors not listed use the default cap",
    "flatten_on_emergency": "close every position on an emergency stop",
}


def _reason_ok(value: str) -> bool:
    return len("".join((value or "").split())) >= MIN_REASON_CHARS


def values_to_initial(values: dict[str, Any]) -> dict[str, Any]:
    """A stored policy's values (JSON) as the form's initial data."""
    out: dict[str, Any] = {}
    for name in POLICY_FIELDS:
        v = values.get(name)
        if name in LIST_FIELDS:
            out[name] = ", ".join(v or [])
        elif name == SECTOR_FIELD:
            out[name] = "\n".join(f"{k}={c}" for k, c in sorted((v or {}).items()))
        else:
            out[name] = v
    return out


def parse_sector_lines(text: str) -> tuple[dict[str, str], list[str]]:
    """`sector=pct` lines -> ({sector: pct}, [problems])."""
    caps: dict[str, str] = {}
    problems: list[str] = []
    for n, line in enumerate((text or "").splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        name, sep, pct = line.partition("=")
        if not sep or not name.strip() or not pct.strip():
            problems.append(f"line {n} ({line!r}) is not `sector=pct`")
            continue
        if name.strip() in caps:
            problems.append(f"sector {name.strip()!r} is listed twice")
            continue
        caps[name.strip()] = pct.strip()
    return caps, problems


def _form_field(name: str, default: Any) -> forms.Field:
    help_text = HELP.get(name, "")
    if name in LIST_FIELDS:
        return forms.CharField(required=False, help_text=help_text,
                               widget=forms.TextInput(attrs={"size": 80}))
    if name == SECTOR_FIELD:
        return forms.CharField(required=False, help_text=help_text,
                               widget=forms.Textarea(attrs={"rows": 4, "cols": 40}))
    if isinstance(default, bool):
        return forms.BooleanField(required=False, help_text=help_text)
    # Numbers are checked by the domain (bounds, finiteness) so its message shows next to the field.
    return forms.CharField(required=True, help_text=help_text, widget=forms.TextInput(attrs={"size": 20}))


_DEFAULTS = {f.name: f.default for f in dc_fields(Policy)}


class _PolicyEditBase(forms.ModelForm):
    """Every policy field (declared below, from POLICY_FIELDS), prefilled with the version in
    force; saving creates the next version."""

    reason = forms.CharField(max_length=2000, widget=forms.Textarea(attrs={"rows": 2, "cols": 80}),
                             help_text="why (kept with the version)")

    class Meta:
        model = RiskPolicy
        fields: list[str] = []

    def __init__(self, *args, **kwargs):
        from risk.services.policy import policy_current_row

        super().__init__(*args, **kwargs)
        self.current = policy_current_row()
        initial = values_to_initial(self.current.values)
        for name in POLICY_FIELDS:
            if name in self.fields:
                self.fields[name].initial = initial[name]
        self.changes: dict[str, Any] = {}

    def clean_reason(self):
        reason = self.cleaned_data.get("reason", "")
        if not _reason_ok(reason):
            raise forms.ValidationError(f"at least {MIN_REASON_CHARS} non-space characters")
        return reason.strip()

    def clean(self):
        cleaned = super().clean()
        raw: dict[str, Any] = {}
        for name in POLICY_FIELDS:
            if name in self.errors:  # e.g. a required number left empty
                continue
            value = cleaned.get(name)
            if name in LIST_FIELDS:
                raw[name] = [s.strip() for s in (value or "").split(",") if s.strip()]
            elif name == SECTOR_FIELD:
                caps, problems = parse_sector_lines(value or "")
                if problems:
                    self.add_error(name, "; ".join(problems))
                    continue
                raw[name] = caps
            elif isinstance(value, bool):
                raw[name] = value
            else:
                raw[name] = (value or "").strip()
        try:
            new = validate_policy_values({**self.current.values, **raw})
        except PolicyError as exc:
            for field, why in exc.errors.items():
                if field in self.fields and field not in self.errors:
                    self.add_error(field, why)
                elif field not in self.fields:
                    self.add_error(None, f"{field}: {why}")
            return cleaned
        new_values = new.to_values()
        self.changes = {k: new_values[k] for k in POLICY_FIELDS if new_values[k] != self.current.values.get(k)}
        if not self.errors and not self.changes:
            raise forms.ValidationError(f"nothing changed: every value equals the policy in force "
                                        f"(version {self.current.version})")
        return cleaned


# Declared fields must exist when the class is built (the admin's modelform_factory checks names).
PolicyEditForm = type("PolicyEditForm", (_PolicyEditBase,),
                      {"__module__": __name__, **{n: _form_field(n, _DEFAULTS[n]) for n in POLICY_FIELDS}})


class ModeChangeForm(forms.ModelForm):
    """Change the system mode (mode_set, by an operator) with a reason on record."""

    class Meta:
        model = ModeChange
        fields = ["mode", "reason"]
        widgets = {"reason": forms.Textarea(attrs={"rows": 2, "cols": 80})}
        labels = {"mode": "new mode"}

    def __init__(self, *args, **kwargs):
        from risk.services.modes import mode_get

        super().__init__(*args, **kwargs)
        self.current = mode_get()
        if "mode" in self.fields:
            self.fields["mode"].help_text = f"the system is in {self.current.value} now"

    def clean(self):
        cleaned = super().clean()
        target, reason = cleaned.get("mode"), cleaned.get("reason")
        if target and reason is not None:
            try:
                check_transition(self.current, target, by_operator=True, reason=reason)
            except ModeTransitionError as exc:
                field = "reason" if "reason" in str(exc) and not _reason_ok(reason) else "mode"
                self.add_error(field, str(exc))
        return cleaned


class EmergencyStopForm(forms.Form):
    FLATTEN_CHOICES = [("", "as the policy says"), ("true", "flatten every position"),
                       ("false", "keep positions (cancel open orders only)")]

    reason = forms.CharField(max_length=2000, widget=forms.Textarea(attrs={"rows": 2, "cols": 80}))
    flatten = forms.ChoiceField(choices=FLATTEN_CHOICES, required=False)

    def clean_reason(self):
        reason = self.cleaned_data.get("reason", "")
        if not _reason_ok(reason):
            raise forms.ValidationError(f"at least {MIN_REASON_CHARS} non-space characters")
        return reason.strip()

    def flatten_value(self) -> bool | None:
        return {"": None, "true": True, "false": False}[self.cleaned_data.get("flatten") or ""]

