"""A small live line plot for training losses, drawn with QPainter so the app needs no plotting library.

Series are stored whole but only a chosen subset is drawn (by default the total loss and the main terms); the rest
can be switched on from the context menu. Axes and text use the widget's palette, so the plot reads in light and
dark themes; the y axis can be logarithmic because MPAE's loss terms span several decades.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QContextMenuEvent, QFont, QFontMetrics, QPainter, QPainterPath, QPalette, QPen
from PySide6.QtWidgets import QMenu, QSizePolicy, QWidget

#: Drawn unless the caller chooses otherwise: the loss that is optimised and its main terms.
DEFAULT_SERIES: tuple[str, ...] = (
    "total", "reconstruction", "semantic", "foreground_presence", "background_presence",
)

# Mid-saturation colours that stay visible on both white and near-black backgrounds.
SERIES_COLORS: tuple[str, ...] = (
    "#3b82f6", "#f97316", "#22c55e", "#ef4444", "#a855f7", "#14b8a6", "#eab308", "#ec4899", "#8b5cf6", "#84cc16",
)

MAX_DRAWN_POINTS = 4000  # more points than this are thinned for drawing (the data keep every point)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values (1, 2, 5 × 10^n steps) covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return []
    if high <= low:
        return [low]
    raw = (high - low) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step - 1e-9) * step
    ticks, value = [], first
    while value <= high + step * 1e-9:
        ticks.append(0.0 if abs(value) < step * 1e-9 else value)
        value += step
    return ticks


def log_ticks(low: float, high: float) -> list[float]:
    """Decades in [low, high] (positive), with 2 and 5 in between when the range spans fewer than three decades."""
    if low <= 0 or high <= 0 or not (math.isfinite(low) and math.isfinite(high)):
        return []
    lo, hi = math.floor(math.log10(low)), math.ceil(math.log10(high))
    multipliers = (1, 2, 5) if math.log10(high / low) < 2.5 else (1,)
    ticks = [m * 10.0 ** e for e in range(lo, hi + 1) for m in multipliers]
    return [t for t in ticks if low * (1 - 1e-9) <= t <= high * (1 + 1e-9)]


def format_tick(value: float) -> str:
    """Short tick labels: 0.001, 0.5, 12, 1.5k, 2e+05."""
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1e5 or magnitude < 1e-3:
        return f"{value:.0e}"
    if magnitude >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:.4g}"


class LossPlot(QWidget):
    """Live line plot: ``set_series`` / ``add_point`` / ``clear``; right-click to choose series and the y scale."""

    def __init__(self, parent: QWidget | None = None, *, visible: Iterable[str] | None = DEFAULT_SERIES,
                 log_y: bool = True, x_label: str = "step") -> None:
        super().__init__(parent)
        self._series: dict[str, tuple[list[float], list[float]]] = {}
        self._colors: dict[str, QColor] = {}
        self._visible: set[str] | None = None if visible is None else set(visible)
        self._log_y = log_y
        self._x_label = x_label
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(240, 140)

    # ----- data -------------------------------------------------------------------------------------------------------
    def set_series(self, name: str, xs: Sequence[float], ys: Sequence[float]) -> None:
        """Replace one series (xs and ys of equal length)."""
        if len(xs) != len(ys):
            raise ValueError(f"Series {name!r} has {len(xs)} x values but {len(ys)} y values; pass equal lengths.")
        self._ensure(name)
        self._series[name] = ([float(x) for x in xs], [float(y) for y in ys])
        self.update()

    def add_point(self, name: str, x: float, y: float) -> None:
        """Append one point to a series (created on first use)."""
        self._ensure(name)
        xs, ys = self._series[name]
        xs.append(float(x))
        ys.append(float(y))
        self.update()

    def clear(self) -> None:
        """Drop every series (the visible-subset choice is kept)."""
        self._series.clear()
        self.update()

    def series_names(self) -> list[str]:
        return list(self._series)

    def series(self, name: str) -> tuple[list[float], list[float]]:
        """(xs, ys) copies of one series."""
        xs, ys = self._series[name]
        return list(xs), list(ys)

    def point_count(self, name: str | None = None) -> int:
        """Points in one series, or in all series."""
        if name is not None:
            return len(self._series.get(name, ((), ()))[0])
        return sum(len(xs) for xs, _ in self._series.values())

    # ----- what is drawn ----------------------------------------------------------------------------------------------
    def set_visible_series(self, names: Iterable[str] | None) -> None:
        """Draw only these series (None: all of them)."""
        self._visible = None if names is None else set(names)
        self.update()

    def is_drawn(self, name: str) -> bool:
        return name in self._series and (self._visible is None or name in self._visible)

    def drawn_series(self) -> list[str]:
        drawn = [n for n in self._series if self.is_drawn(n)]
        return drawn if drawn else list(self._series)  # nothing chosen is present yet: show what there is

    def set_log_y(self, enabled: bool) -> None:
        self._log_y = bool(enabled)
        self.update()

    def log_y(self) -> bool:
        return self._log_y

    def color(self, name: str) -> QColor:
        self._ensure(name)
        return QColor(self._colors[name])

    def _ensure(self, name: str) -> None:
        if name not in self._series:
            self._series[name] = ([], [])
        if name not in self._colors:
            self._colors[name] = QColor(SERIES_COLORS[len(self._colors) % len(SERIES_COLORS)])

    # ----- Qt ---------------------------------------------------------------------------------------------------------
    def sizeHint(self) -> QSize:
        return QSize(520, 260)

    def contextMenuEvent(self, event: QContextMenuEvent) -> None:
        menu = QMenu(self)
        log_action = menu.addAction("Logarithmic y axis")
        log_action.setCheckable(True)
        log_action.setChecked(self._log_y)
        log_action.toggled.connect(self.set_log_y)
        if self._series:
            menu.addSeparator()
        for name in self._series:
            action = menu.addAction(name)
            action.setCheckable(True)
            action.setChecked(self.is_drawn(name))
            action.toggled.connect(lambda on, n=name: self._toggle(n, on))
        menu.exec(event.globalPos())

    def _toggle(self, name: str, on: bool) -> None:
        visible = set(self.drawn_series()) if self._visible is None else set(self._visible)
        (visible.add if on else visible.discard)(name)
        self.set_visible_series(visible)

    def _points(self, name: str) -> list[tuple[float, float]]:
        xs, ys = self._series[name]
        points = [(x, y) for x, y in zip(xs, ys)
                  if math.isfinite(x) and math.isfinite(y) and (y > 0 or not self._log_y)]
        if len(points) > MAX_DRAWN_POINTS:
            stride = math.ceil(len(points) / MAX_DRAWN_POINTS)
            points = points[::stride] + ([points[-1]] if (len(points) - 1) % stride else [])
        return points

    def paintEvent(self, event) -> None:  # noqa: ARG002
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        text_color = pal.color(QPalette.ColorRole.WindowText)
        painter.fillRect(self.rect(), pal.color(QPalette.ColorRole.Base))
        font = QFont(self.font())
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.9))
        painter.setFont(font)
        metrics = QFontMetrics(font)

        names = self.drawn_series()
        data = {name: self._points(name) for name in names}
        data = {name: pts for name, pts in data.items() if pts}
        if not data:
            painter.setPen(pal.color(QPalette.ColorRole.PlaceholderText))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "No training metrics yet")
            painter.end()
            return

        xs = [x for pts in data.values() for x, _ in pts]
        ys = [y for pts in data.values() for _, y in pts]
        x_lo, x_hi = min(xs), max(xs)
        if x_hi <= x_lo:
            x_lo, x_hi = x_lo - 1, x_hi + 1
        y_lo, y_hi = min(ys), max(ys)
        if self._log_y:
            ly_lo, ly_hi = math.log10(y_lo), math.log10(y_hi)
            pad = max((ly_hi - ly_lo) * 0.05, 0.05)
            y_lo, y_hi = 10 ** (ly_lo - pad), 10 ** (ly_hi + pad)
            y_ticks = log_ticks(y_lo, y_hi) or [10 ** round(ly_lo)]
        else:
            pad = (y_hi - y_lo) * 0.05 or max(abs(y_hi) * 0.1, 0.1)
            y_lo, y_hi = y_lo - pad, y_hi + pad
            y_ticks = nice_ticks(y_lo, y_hi)
        x_ticks = nice_ticks(x_lo, x_hi, 6)

        y_labels = [format_tick(t) for t in y_ticks]
        left = max((metrics.horizontalAdvance(s) for s in y_labels), default=20) + 12
        top = metrics.height() // 2 + 6
        plot = QRectF(left, top, self.width() - left - 12, self.height() - top - 2 * metrics.height() - 10)
        if plot.width() < 20 or plot.height() < 20:
            painter.end()
            return

        def map_x(x: float) -> float:
            return plot.left() + (x - x_lo) / (x_hi - x_lo) * plot.width()

        def map_y(y: float) -> float:
            if self._log_y:
                frac = (math.log10(y) - math.log10(y_lo)) / (math.log10(y_hi) - math.log10(y_lo))
            else:
                frac = (y - y_lo) / (y_hi - y_lo)
            return plot.bottom() - frac * plot.height()

        grid = QColor(text_color)
        grid.setAlpha(40)
        axis_pen = QPen(text_color, 1)
        painter.setPen(QPen(grid, 1))
        for t in y_ticks:
            painter.drawLine(QPointF(plot.left(), map_y(t)), QPointF(plot.right(), map_y(t)))
        for t in x_ticks:
            painter.drawLine(QPointF(map_x(t), plot.top()), QPointF(map_x(t), plot.bottom()))
        painter.setPen(axis_pen)
        painter.drawLine(plot.bottomLeft(), plot.bottomRight())
        painter.drawLine(plot.bottomLeft(), plot.topLeft())
        for t, label in zip(y_ticks, y_labels):
            y = map_y(t)
            painter.drawLine(QPointF(plot.left() - 4, y), QPointF(plot.left(), y))
            painter.drawText(QRectF(0, y - metrics.height() / 2, left - 7, metrics.height()),
                             Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, label)
        for t in x_ticks:
            x = map_x(t)
            painter.drawLine(QPointF(x, plot.bottom()), QPointF(x, plot.bottom() + 4))
            label = format_tick(t)
            width = metrics.horizontalAdvance(label)
            painter.drawText(QRectF(x - width / 2 - 2, plot.bottom() + 5, width + 4, metrics.height()),
                             Qt.AlignmentFlag.AlignCenter, label)
        scale = "log" if self._log_y else "linear"
        painter.drawText(QRectF(plot.left(), plot.bottom() + 5 + metrics.height(), plot.width(), metrics.height()),
                         Qt.AlignmentFlag.AlignCenter, f"{self._x_label}  ({scale} y)")

        painter.save()
        painter.setClipRect(plot.adjusted(-1, -1, 1, 1))
        for name, pts in data.items():
            pen = QPen(self._colors[name], 2.4 if name == "total" else 1.6)
            pen.setCapStyle(Qt.PenCapStyle.RoundCap)
            pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
            painter.setPen(pen)
            if len(pts) == 1:
                painter.setBrush(self._colors[name])
                painter.drawEllipse(QPointF(map_x(pts[0][0]), map_y(pts[0][1])), 3, 3)
                painter.setBrush(Qt.BrushStyle.NoBrush)
                continue
            path = QPainterPath(QPointF(map_x(pts[0][0]), map_y(pts[0][1])))
            for x, y in pts[1:]:
                path.lineTo(map_x(x), map_y(y))
            painter.drawPath(path)
        painter.restore()
        self._draw_legend(painter, plot, list(data), metrics, pal)
        painter.end()

    def _draw_legend(self, painter: QPainter, plot: QRectF, names: list[str], metrics: QFontMetrics,
                     pal: QPalette) -> None:
        swatch, gap, line_h = 14, 6, metrics.height() + 2
        width = max(metrics.horizontalAdvance(n) for n in names) + swatch + 3 * gap
        box = QRectF(plot.right() - width - 6, plot.top() + 6, width, line_h * len(names) + gap)
        background = QColor(pal.color(QPalette.ColorRole.Base))
        background.setAlpha(215)
        border = QColor(pal.color(QPalette.ColorRole.WindowText))
        border.setAlpha(70)
        painter.setPen(QPen(border, 1))
        painter.setBrush(background)
        painter.drawRoundedRect(box, 4, 4)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        for i, name in enumerate(names):
            y = box.top() + gap / 2 + i * line_h + line_h / 2
            painter.setPen(QPen(self._colors[name], 2.4 if name == "total" else 1.8))
            painter.drawLine(QPointF(box.left() + gap, y), QPointF(box.left() + gap + swatch, y))
            painter.setPen(pal.color(QPalette.ColorRole.WindowText))
            painter.drawText(QRectF(box.left() + 2 * gap + swatch, y - line_h / 2, width, line_h),
                             Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, name)
