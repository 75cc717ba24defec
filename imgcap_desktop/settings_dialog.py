"""The settings dialog: sidecar naming, decoding, device, overwrite policy and where captions go."""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtWidgets import QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFormLayout, QSpinBox

from imgcap_desktop.settings import DEVICES, OVERWRITE_POLICIES, RANGES, SIDECAR_STYLES, AppSettings


def _combo(choices: dict[str, str], current: str) -> QComboBox:
    combo = QComboBox()
    for value, label in choices.items():
        combo.addItem(label, value)
    combo.setCurrentIndex(max(0, combo.findData(current)))
    return combo


class SettingsDialog(QDialog):
    """Edits a copy of :class:`AppSettings`; :meth:`result_settings` gives the edited copy."""

    def __init__(self, settings: AppSettings, parent=None):
        super().__init__(parent)
        self.setWindowTitle("imgcap settings")
        self._settings = settings
        self.sidecar_style = _combo(SIDECAR_STYLES, settings.sidecar_style)
        self.beam_size = QSpinBox()
        self.beam_size.setRange(*RANGES["beam_size"])
        self.beam_size.setValue(settings.beam_size)
        self.batch_size = QSpinBox()
        self.batch_size.setRange(*RANGES["batch_size"])
        self.batch_size.setValue(settings.batch_size)
        self.device = _combo(DEVICES, settings.device)
        self.overwrite_policy = _combo(OVERWRITE_POLICIES, settings.overwrite_policy)
        self.auto_write = QCheckBox("Write captions to sidecars as soon as they are produced")
        self.auto_write.setToolTip("When off, new captions are held until you choose Caption → Accept Held Captions")
        self.auto_write.setChecked(settings.auto_write)

        form = QFormLayout(self)
        form.addRow("Sidecar naming", self.sidecar_style)
        form.addRow("Beam size", self.beam_size)
        form.addRow("Batch size", self.batch_size)
        form.addRow("Device", self.device)
        form.addRow("Existing captions", self.overwrite_policy)
        form.addRow("", self.auto_write)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def result_settings(self) -> AppSettings:
        return replace(
            self._settings,
            sidecar_style=self.sidecar_style.currentData(),
            beam_size=self.beam_size.value(),
            batch_size=self.batch_size.value(),
            device=self.device.currentData(),
            overwrite_policy=self.overwrite_policy.currentData(),
            auto_write=self.auto_write.isChecked(),
        )
