import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["conformance.test.js"],
    // The fork groups and the reserved subscription APIs come later.
    testNamePattern: process.env.CONFORMANCE_FILTER,
  },
});
