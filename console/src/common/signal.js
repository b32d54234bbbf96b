// A value that components can watch: the session and the route are two of them.
import { useEffect, useState } from 'preact/hooks';

export function signal(initial) {
  let value = initial;
  const watchers = new Set();
  return {
    get: () => value,
    set(next) {
      value = next;
      for (const w of watchers) {
        w(next);
      }
    },
    watch(w) {
      watchers.add(w);
      return () => watchers.delete(w);
    },
  };
}

// The signal's value, re-rendering the component when it changes.
export function useSignal(s) {
  const [value, setValue] = useState(s.get());
  useEffect(() => {
    setValue(s.get());
    return s.watch(setValue);
  }, [s]);
  return value;
}
