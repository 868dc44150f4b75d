import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// The server serves the built UI from the Python package (src/hodei/webui) at "/".
export default defineConfig({
  base: "/",
  plugins: [react()],
  build: {
    outDir: "../src/hodei/webui",
    emptyOutDir: true,
    sourcemap: false,
  },
  server: {
    proxy: {
      "/api": { target: "http://127.0.0.1:8080", changeOrigin: false, ws: true },
    },
  },
});
