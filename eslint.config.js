// Lint: typescript-eslint's recommended rules on every TypeScript file, with the project's own
// conventions (unused names may start with _; `any` is refused; no floating promises need type
// information, so the fast syntactic rules only).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const kyselyOutsideRepositories = {
  name: 'kysely',
  message:
    'Only *-repository.ts files (and control-db.ts, migrate.ts) query the control plane: call a repository function.',
};
const duckdbOutsideStore = {
  name: '@duckdb/node-api',
  message: 'Only the DuckDB store (duck-store.ts) runs DuckDB statements: call a DuckStore method.',
};
// A Kysely query built on a handle (room.control.db.selectFrom(...)) needs no import; these catch it.
const queriesOutsideRepositories = [
  ...['selectFrom', 'insertInto', 'updateTable', 'deleteFrom', 'mergeInto', 'replaceInto'].map((name) => ({
    selector: `CallExpression[callee.property.name='${name}']`,
    message: `${name}(): only *-repository.ts files query the control plane; call a repository function.`,
  })),
  {
    selector: "CallExpression[callee.property.name='transaction'][arguments.length=0]",
    message: 'transaction(): open control-plane transactions with inTransaction (control-db.ts).',
  },
];

export default tseslint.config(
  {
    ignores: [
      'dist/**',
      'web/dist/**',
      'node_modules/**',
      'data/**',
      'scratch/**',
      'test-results/**',
      '.bench-data/**',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: { ecmaVersion: 2023, sourceType: 'module' },
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' },
      ],
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      'no-control-regex': 'off',
      eqeqeq: ['error', 'smart'],
    },
  },
  // One way to reach the data: only the control plane's repositories (and its plumbing) use
  // Kysely, and only the DuckDB store uses DuckDB; services call their functions and methods.
  {
    files: ['**/*.ts'],
    ignores: ['tests/**', 'bench/**', '**/*-repository.ts', '**/control-db.ts', '**/migrate.ts', '**/duck-store.ts'],
    rules: {
      'no-restricted-imports': ['error', { paths: [kyselyOutsideRepositories, duckdbOutsideStore] }],
      'no-restricted-syntax': ['error', ...queriesOutsideRepositories],
    },
  },
  {
    files: ['**/*-repository.ts', '**/control-db.ts', '**/migrate.ts'],
    rules: { 'no-restricted-imports': ['error', { paths: [duckdbOutsideStore] }] },
  },
  {
    files: ['**/duck-store.ts'],
    rules: {
      'no-restricted-imports': ['error', { paths: [kyselyOutsideRepositories] }],
      'no-restricted-syntax': ['error', ...queriesOutsideRepositories],
    },
  },
  {
    // Tests read JSON bodies of many shapes; `any` there is the parsed body, not a design choice.
    files: ['tests/**/*.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
  {
    files: ['bin/**/*.js', 'eslint.config.js'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly' } },
  },
);
