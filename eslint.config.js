// Lint for what a reviewer would otherwise have to catch: typescript-eslint's recommended rules,
// and functions too tangled to hold in mind (cyclomatic complexity above 15).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// The Node.js globals the plain-JavaScript scripts use (no `globals` package needed for these few).
const nodeGlobals = { console: 'readonly', process: 'readonly' };

export default tseslint.config(
  { ignores: ['node_modules/', 'dist/', 'cdk.out/', 'examples/**/data/', '.starfish/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.js', '**/*.mjs'],
    languageOptions: { globals: nodeGlobals },
  },
  {
    files: ['**/*.ts'],
    rules: {
      complexity: ['error', 15],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
    },
  },
);
