/**
 * Runs `task` every `ms` (never two at once: a run that outlasts the period skips the next tick),
 * for what a process looks for in the shared database now and then (other processes' new
 * SearchParameters and profiles). A failed run is reported and the next tick tries again.
 * The timer does not keep the process alive. Returns the function that stops it; `ms` 0 or undefined runs nothing.
 */
export function pollEvery(ms: number | undefined, task: () => Promise<void>, onError: (e: unknown) => void): () => void {
  if (!ms) return () => undefined;
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    task()
      .catch(onError)
      .finally(() => (running = false));
  }, ms);
  timer.unref();
  return () => clearInterval(timer);
}
