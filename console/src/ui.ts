import { html } from 'htm/preact';
import type { ComponentChildren, VNode } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';

export interface Loaded<T> {
  data?: T;
  error?: string;
  loading: boolean;
  reload: () => void;
}

/** Runs `load` on mount (and on `reload`); one panel's failure never touches another. */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[] = []): Loaded<T> {
  const [state, setState] = useState<{ data?: T; error?: string; loading: boolean }>({ loading: true });
  const [round, setRound] = useState(0);
  useEffect(() => {
    let live = true;
    setState((s) => ({ ...s, loading: true }));
    load().then(
      (data) => live && setState({ data, loading: false }),
      (e: unknown) => live && setState({ error: e instanceof Error ? e.message : String(e), loading: false }),
    );
    return () => {
      live = false;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, round]);
  const reload = useCallback(() => setRound((r) => r + 1), []);
  return { ...state, reload };
}

let panelIds = 0;

/** A titled section: "Loading…", a clear "not available" when its call failed, or its content. */
export function Panel<T>(props: { title: string; state: Loaded<T>; wide?: boolean; children: (data: T) => ComponentChildren; id?: string }): VNode {
  const [headingId] = useState(() => `panel-${++panelIds}`);
  const { state } = props;
  let body: ComponentChildren;
  if (state.loading && state.data === undefined) body = html`<p class="muted" role="status">Loading…</p>`;
  else if (state.error !== undefined) body = html`<p class="unavailable" role="status"><strong>Not available.</strong> ${state.error}</p>`;
  else body = props.children(state.data as T);
  return html`<section class=${`panel${props.wide ? ' wide' : ''}`} aria-labelledby=${headingId} data-panel=${props.id ?? props.title} aria-busy=${state.loading ? 'true' : 'false'}>
    <h2 id=${headingId}>${props.title}</h2>
    ${body}
  </section>`;
}

export function Stat(props: { label: string; value: string | number; note?: string; tone?: 'warn' | 'bad' | 'ok' }): VNode {
  return html`<div class=${`stat ${props.tone ?? ''}`}><span class="stat-value">${props.value}</span><span class="stat-label">${props.label}</span>${props.note ? html`<span class="stat-note">${props.note}</span>` : null}</div>`;
}

export function Empty(props: { children: ComponentChildren }): VNode {
  return html`<p class="muted">${props.children}</p>`;
}

export interface Series {
  label: string;
  values: Array<number | null>;
}

/**
 * A uPlot time-series chart sized to its container (phone or desktop). `x` in seconds since
 * the epoch. The chart is an image to assistive technology, named by `label`; the panels
 * beside it carry the numbers as text.
 */
export function TrendChart(props: { label: string; x: number[]; series: Series[]; height?: number }): VNode {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = box.current;
    if (!el || props.x.length === 0) return;
    const colors = ['#1f5fa8', '#b3261e', '#2e7d32', '#8e24aa'];
    const opts: uPlot.Options = {
      width: Math.max(240, el.clientWidth),
      height: props.height ?? 180,
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
      series: [{}, ...props.series.map((s, i) => ({ label: s.label, stroke: colors[i % colors.length], width: 2, points: { show: true, size: 5 } }))],
      axes: [{ stroke: '#333' }, { stroke: '#333' }],
    };
    const plot = new uPlot(opts, [props.x, ...props.series.map((s) => s.values)] as uPlot.AlignedData, el);
    const resize = new ResizeObserver(() => plot.setSize({ width: Math.max(240, el.clientWidth), height: props.height ?? 180 }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.destroy();
    };
  }, [props.x, props.series]);
  if (props.x.length === 0) return html`<p class="muted">No data for a chart.</p>`;
  return html`<div class="chart" role="img" aria-label=${props.label} ref=${box}></div>`;
}

/** A button that runs an action, disables itself meanwhile and shows the server's refusal. */
export function ActionButton(props: { label: string; run: () => Promise<unknown>; done?: () => void; kind?: 'primary' | 'secondary'; name?: string }): VNode {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | undefined>();
  const click = async () => {
    setBusy(true);
    setError(undefined);
    try {
      await props.run();
      props.done?.();
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    } finally {
      setBusy(false);
    }
  };
  return html`<span class="action"><button type="button" class=${props.kind ?? 'secondary'} disabled=${busy} onClick=${click} aria-label=${props.name ?? props.label}>${busy ? '…' : props.label}</button>${error ? html`<span class="error" role="alert">${error}</span>` : null}</span>`;
}
