// TimeChart: the local dashboard's small charting library (kept in the repository: the page
// loads nothing from elsewhere, so it works offline).
//
// SVG line charts of time series on one time axis shared by every chart of a group, like a
// CloudWatch dashboard: the same window everywhere, clock labels, value labels, gaps where a
// value is missing, and a crosshair that follows the pointer across all charts at once, with
// the hovered time's values in a tooltip. Times are epoch seconds; values numbers or null.
//
//   const group = new TimeChart.Group();
//   const chart = group.add(element, {colors: ["#0972d3", "#e07941"]});
//   group.draw([t0, t1]);                       // after chart.setData(series) on each chart
//   chart.setData([{label: "stored", points: [[t, v], ...]}], "per second");
//
// Works in a browser; under Node the pure helpers (ticks, nearest, clock) are exported for tests.
(function (root) {
  "use strict";
  const NS = "http://www.w3.org/2000/svg";
  const SECOND_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200];
  const PAD = {left: 44, right: 8, top: 8, bottom: 18};

  // Time ticks: multiples of a step from SECOND_STEPS that give at most `most` ticks.
  function timeTicks(t0, t1, most) {
    const span = Math.max(t1 - t0, 1);
    const step = SECOND_STEPS.find(s => span / s <= most) || SECOND_STEPS[SECOND_STEPS.length - 1];
    const ticks = [];
    for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) ticks.push(t);
    return {step, ticks};
  }

  // Value ticks from 0: a 1, 2 or 5 step (times a power of ten) giving about `count` ticks.
  function valueTicks(max, count) {
    const top = max > 0 ? max : 1;
    const raw = top / count;
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map(m => m * power).find(s => s >= raw);
    const ticks = [];
    for (let v = 0; v <= top + step * 1e-9; v += step) ticks.push(+v.toPrecision(12));
    if (ticks[ticks.length - 1] < top) ticks.push(+(ticks[ticks.length - 1] + step).toPrecision(12));
    return ticks;
  }

  // "14:05:30", or "14:05" when the ticks are whole minutes; local time, 24-hour clock.
  function clock(t, withSeconds) {
    const d = new Date(t * 1000);
    const two = n => String(n).padStart(2, "0");
    const hm = `${two(d.getHours())}:${two(d.getMinutes())}`;
    return withSeconds ? `${hm}:${two(d.getSeconds())}` : hm;
  }

  // The value at time t: the sample nearest to t if it lies within `within` seconds, else null.
  function nearest(points, t, within) {
    let lo = 0, hi = points.length;  // lo: the first sample at or after t
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (points[mid][0] < t) lo = mid + 1; else hi = mid;
    }
    const best = [lo - 1, lo].filter(i => i >= 0 && i < points.length)
      .sort((a, b) => Math.abs(points[a][0] - t) - Math.abs(points[b][0] - t))[0];
    if (best === undefined || Math.abs(points[best][0] - t) > within) return null;
    return points[best][1];
  }

  function format(v) {
    if (v === null || v === undefined) return "\u2013";
    if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString("en-US");
    return (Math.round(v * 10) / 10).toLocaleString("en-US");
  }

  function el(name, attrs, text) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  class Chart {
    constructor(container, group, options) {
      this.container = container;
      this.group = group;
      this.colors = options.colors;
      this.height = options.height || 130;
      this.series = [];
      this.unit = "";
      this.tooltip = document.createElement("div");
      this.tooltip.className = "timechart-tooltip";
      this.tooltip.hidden = true;
      container.style.position = "relative";
      container.appendChild(this.tooltip);
      this.svg = el("svg", {class: "timechart", height: this.height});
      container.insertBefore(this.svg, this.tooltip);
      const move = event => group.hover(this, this.timeAt(event.clientX));
      this.svg.addEventListener("pointermove", move);
      this.svg.addEventListener("pointerdown", move);
      this.svg.addEventListener("pointerleave", () => group.hover(null, null));
    }

    setData(series, unit) {
      this.series = series;
      this.unit = unit || "";
    }

    get width() {
      return Math.max(this.container.clientWidth || 420, 120);
    }

    x(t) {
      const [t0, t1] = this.domain;
      return PAD.left + (t - t0) / Math.max(t1 - t0, 1e-9) * (this.width - PAD.left - PAD.right);
    }

    y(v) {
      return PAD.top + (1 - v / this.top) * (this.height - PAD.top - PAD.bottom);
    }

    timeAt(clientX) {
      const box = this.svg.getBoundingClientRect();
      const [t0, t1] = this.domain;
      const share = (clientX - box.left - PAD.left) / (this.width - PAD.left - PAD.right);
      return t0 + Math.min(Math.max(share, 0), 1) * (t1 - t0);
    }

    draw(domain, interval) {
      this.domain = domain;
      this.interval = interval;
      const [t0, t1] = domain;
      const width = this.width, svg = this.svg;
      svg.setAttribute("width", width);
      svg.setAttribute("viewBox", `0 0 ${width} ${this.height}`);
      svg.replaceChildren();
      const shown = this.series.flatMap(s => s.points.filter(p => p[1] !== null && p[0] >= t0));
      const yTicks = valueTicks(Math.max(0, ...shown.map(p => p[1])), 4);
      this.top = yTicks[yTicks.length - 1];
      const axis = el("g", {class: "axis"});
      for (const v of yTicks) {
        axis.appendChild(el("line", {x1: PAD.left, x2: width - PAD.right, y1: this.y(v),
                                     y2: this.y(v), class: v === 0 ? "base" : "grid"}));
        axis.appendChild(el("text", {x: PAD.left - 4, y: this.y(v) + 3, "text-anchor": "end",
                                     class: "y-label"}, format(v)));
      }
      const {step, ticks} = timeTicks(t0, t1, Math.max(2, Math.floor(width / 70)));
      for (const t of ticks) {
        axis.appendChild(el("line", {x1: this.x(t), x2: this.x(t), y1: PAD.top,
                                     y2: this.height - PAD.bottom, class: "grid"}));
        axis.appendChild(el("text", {x: this.x(t), y: this.height - 4, "text-anchor": "middle",
                                     class: "x-label"}, clock(t, step < 60)));
      }
      svg.appendChild(axis);
      this.series.forEach((s, i) => {
        for (const run of this.runs(s.points)) {
          svg.appendChild(el("polyline", {
            fill: "none", stroke: this.colors[i % this.colors.length], "stroke-width": 1.6,
            "data-series": s.key || s.label,
            points: run.map(p => `${this.x(p[0]).toFixed(1)},${this.y(p[1]).toFixed(1)}`).join(" "),
          }));
        }
      });
      if (!shown.length) {
        svg.appendChild(el("text", {x: PAD.left + 8, y: PAD.top + 16, class: "empty"},
                           "no data yet"));
      }
      this.cursor = el("line", {y1: PAD.top, y2: this.height - PAD.bottom, class: "cursor",
                                visibility: "hidden"});
      svg.appendChild(this.cursor);
    }

    // Unbroken stretches of points inside the window: a missing value or a sample gap of more
    // than 2.5 intervals breaks the line, as CloudWatch leaves a gap without data.
    runs(points) {
      const runs = [];
      let run = [], last = null;
      for (const p of points) {
        const gap = last !== null && p[0] - last > 2.5 * this.interval;
        if (p[1] === null || p[0] < this.domain[0] || gap) {
          if (run.length) runs.push(run);
          run = [];
        }
        if (p[1] !== null && p[0] >= this.domain[0]) run.push(p);
        last = p[0];
      }
      if (run.length) runs.push(run);
      return runs.map(r => (r.length === 1 ? [r[0], r[0]] : r));
    }

    // The crosshair at t (null: none); the tooltip only on the chart under the pointer.
    showAt(t, withTooltip) {
      if (t === null || !this.domain) {
        this.cursor && this.cursor.setAttribute("visibility", "hidden");
        this.tooltip.hidden = true;
        return [];
      }
      const x = this.x(t);
      this.cursor.setAttribute("x1", x);
      this.cursor.setAttribute("x2", x);
      this.cursor.setAttribute("visibility", "visible");
      const values = this.series.map((s, i) => ({
        label: s.label, color: this.colors[i % this.colors.length],
        value: nearest(s.points, t, 1.5 * this.interval),
      }));
      this.tooltip.hidden = !withTooltip;
      if (withTooltip) {
        this.tooltip.replaceChildren();
        const head = document.createElement("b");
        head.textContent = clock(t, true);
        this.tooltip.appendChild(head);
        for (const v of values) {
          const row = document.createElement("div");
          row.className = "timechart-row";
          row.dataset.label = v.label;
          row.innerHTML = `<i style="background:${v.color}"></i><span></span> <b></b>`;
          row.children[1].textContent = v.label;
          row.children[2].textContent = v.value === null ? format(v.value)
            : `${format(v.value)} ${this.unit}`;
          this.tooltip.appendChild(row);
        }
        const room = this.width - this.tooltip.offsetWidth - 4;
        this.tooltip.style.left = `${Math.max(0, Math.min(x + 12, room))}px`;
        this.tooltip.style.top = "4px";
      }
      return values;
    }
  }

  class Group {
    constructor() {
      this.charts = [];
      this.hoverT = null;
      this.hovered = null;
    }

    add(container, options) {
      const chart = new Chart(container, this, options);
      this.charts.push(chart);
      return chart;
    }

    // Draw every chart over the same window [t0, t1], samples `interval` seconds apart.
    draw(domain, interval) {
      for (const chart of this.charts) chart.draw(domain, interval || 2);
      this.hover(this.hovered, this.hoverT);  // the crosshair stays where the pointer left it
    }

    hover(chart, t) {
      this.hovered = chart;
      this.hoverT = t;
      for (const c of this.charts) c.showAt(t, c === chart);
    }
  }

  const api = {Chart, Group, timeTicks, valueTicks, clock, nearest, format};
  if (typeof module !== "undefined" && module.exports) module.exports = api;
  else root.TimeChart = api;
})(typeof window !== "undefined" ? window : globalThis);
