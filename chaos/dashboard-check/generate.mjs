// Writes gen/<file>.ts for every dashboard JSON in the directory given:
// the dashboard as an object literal that must satisfy `Board` (types.ts),
// so tsc reports every missing field, wrong type and unknown property.
import { readdirSync, readFileSync, writeFileSync, mkdirSync, rmSync } from "node:fs";
import { join, basename } from "node:path";

const dir = process.argv[2];
const out = new URL("./gen/", import.meta.url).pathname;
rmSync(out, { recursive: true, force: true });
mkdirSync(out);
let count = 0;
for (const file of readdirSync(dir).filter((f) => f.endsWith(".json"))) {
  const board = JSON.parse(readFileSync(join(dir, file), "utf8"));
  const name = basename(file, ".json").replace(/[^A-Za-z0-9]/g, "_");
  writeFileSync(
    join(out, `${name}.ts`),
    `import type { Board } from "../types";\nexport const board = ${JSON.stringify(board, null, 2)} satisfies Board;\n`,
  );
  count += 1;
}
console.log(`${count} dashboards`);
