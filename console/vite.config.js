// Both consoles in one build: src/hub/index.html and src/gateway/index.html, with the code they
// share split into common chunks. The daemons serve them under /console/ (src/console/ in the
// C++ tree), so every asset's address starts with /console/assets/.
import { resolve } from 'node:path';
import { defineConfig } from 'vite';

const src = resolve(import.meta.dirname, 'src');

export default defineConfig({
  root: src,
  base: '/console/',
  build: {
    outDir: resolve(import.meta.dirname, 'dist'),
    emptyOutDir: true,
    target: 'es2022',
    // No source maps: the daemons embed what is built, and the sources are in the repository.
    sourcemap: false,
    rollupOptions: {
      input: {
        hub: resolve(src, 'hub/index.html'),
        gateway: resolve(src, 'gateway/index.html'),
      },
    },
  },
});
