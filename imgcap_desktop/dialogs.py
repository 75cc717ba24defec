"""The questions the main window asks: replace a person's captions, stop a run to close, held captions at
quit, CSV files."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from imgcap_desktop.metadata.printable import count as _count

EXCEL_FILTER = "CSV for Excel (UTF-8 with BOM) (*.csv)"


def confirm_replace_human(parent: QWidget, count: int) -> bool:
    """Ask before captions a person wrote are replaced (the settings allow it, but every time counts)."""
    answer = QMessageBox.question(
        parent, "Replace human captions?",
        f"{_count(count, 'photo')} of these have captions written or edited by a person. Replace them too?",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No,
    )
    return answer == QMessageBox.StandardButton.Yes


def confirm_stop_run(parent: QWidget, done: int, total: int, verb: str = "Captioned") -> bool:
    """Ask before a run under way is stopped to close the window: True to stop it and close."""
    box = QMessageBox(QMessageBox.Icon.Question, "Stop captioning?",
                      f"The run under way is not done ({verb.lower()} {done} of {_count(total, 'photo')}). "
                      f"Stop it and close? What it did is kept.", parent=parent)
    stop = box.addButton("Stop and Close", QMessageBox.ButtonRole.AcceptRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(stop)
    box.exec()
    return box.clickedButton() is stop


def ask_about_held(parent: QWidget, count: int, before: str = "closing") -> QMessageBox.StandardButton:
    """Save, Discard or Cancel: what to do with captions held for review (or held because they could
    not be written) before the window closes or shows another folder (``before``: "closing")."""
    return QMessageBox.question(
        parent, "Write held captions?",
        f"{_count(count, 'caption')} held for review {'is' if count == 1 else 'are'} not written to "
        f"the sidecars yet. Write them before {before}?",
        QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel,
        QMessageBox.StandardButton.Save,
    )


def ask_export_file(parent: QWidget, folder: Path, selection_only: bool) -> tuple[str, bool]:
    """``(file name or "", with a BOM for Excel)`` for a CSV export."""
    what = "selected photos" if selection_only else "folder"
    name, chosen = QFileDialog.getSaveFileName(parent, f"Export the {what} to CSV", str(folder / "captions.csv"),
                                               f"CSV files (*.csv);;{EXCEL_FILTER}")
    return name, chosen == EXCEL_FILTER


def ask_import_file(parent: QWidget, folder: Path) -> str:
    """The CSV file to import, or ""."""
    name, _ = QFileDialog.getOpenFileName(parent, "Import captions from CSV", str(folder), "CSV files (*.csv)")
    return name
