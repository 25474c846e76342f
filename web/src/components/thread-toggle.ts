/**
 * A `<details>` toggle handler that adds the comment thread of `kind`/`id` when the details are first
 * opened: the thread (and its request) loads only for the discussions someone opens.
 */
export function toggleThread(e: Event, kind: 'incident' | 'annotation' | 'goal' | 'proposal', id: string): void {
  const d = e.currentTarget as HTMLDetailsElement;
  if (!d.open || d.querySelector('parity-thread')) return;
  void import('./parity-thread.js').then(() => {
    const thread = document.createElement('parity-thread');
    thread.kind = kind;
    thread.target = id;
    d.append(thread);
  });
}
