import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

// The dashboard: Lit components and Vega-Lite charts, built into web/dist and served by the
// room at /. Everything is bundled: the page asks no host but the room.
export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    chunkSizeWarningLimit: 1500,
    rollupOptions: {
      input: {
        main: fileURLToPath(new URL('./index.html', import.meta.url)),
        embed: fileURLToPath(new URL('./embed.html', import.meta.url)),
      },
      // /embed.js keeps its name: a partner's page loads it from the room by a stable address.
      output: { entryFileNames: (chunk) => (chunk.name === 'embed' ? 'embed.js' : 'assets/[name]-[hash].js') },
    },
  },
  server: { proxy: { '/v1': 'http://localhost:8080' } },
});
