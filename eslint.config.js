// ESLint for the project's TypeScript and JavaScript (`npm run lint`, part of `npm test`). Formatting
// is prettier's (.prettierrc), so no style rules here: only rules that catch real problems. The
// TypeScript rules that need types (floating promises, misused promises, awaiting a non-promise)
// read the project's tsconfig files, server and tests from ./tsconfig.json, the viewer extension
// from extension/tsconfig.json.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const nodeGlobals = Object.fromEntries(
  ['process', 'console', 'URL', 'Buffer', 'setTimeout', 'clearTimeout', 'structuredClone'].map((name) => [name, 'readonly']),
);

export default tseslint.config(
  { ignores: ['dist/', 'vendor/', 'node_modules/', 'models/', 'test/e2e/artifacts/', 'bench/.cache/'] },
  js.configs.recommended,
  tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // Unused code is removed, not kept; a leading underscore marks a value left out on purpose
      // (destructuring a field away, a callback's unused parameter).
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none', ignoreRestSiblings: true },
      ],
      // A promise nobody awaits loses its rejection: await it, or say `void` where fire-and-forget is meant.
      '@typescript-eslint/no-floating-promises': 'error',
      // Express 5 awaits async handlers, and Node's EventEmitters ignore a listener's return value.
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: false }],
      eqeqeq: ['error', 'always', { null: 'ignore' }],
      'no-var': 'error',
      'prefer-const': 'error',
      // Types at the edges of untyped data (DICOM JSON, dcmjs, OHIF's runtime objects, test fixtures)
      // are asserted where they are read; these rules would flag every such read.
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      // Numbers and unknown DICOM values in messages are intended.
      '@typescript-eslint/restrict-template-expressions': 'off',
      // DICOM JSON values are `unknown` until read (String() is how a UI or IS value is read); objects
      // of a known type that would print as [object Object] are still reported.
      '@typescript-eslint/no-base-to-string': ['error', { checkUnknown: false }],
      // The queue interface is async for both backends; the embedded one answers synchronously
      // inside async methods (so that its throws become rejections, as the Redis one's do).
      '@typescript-eslint/require-await': 'off',
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    extends: [tseslint.configs.disableTypeChecked],
    languageOptions: { globals: nodeGlobals },
  },
);
