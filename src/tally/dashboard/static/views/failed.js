// TODO view failed
import { pageHeader } from "../dom.js";

export async function render(ctx) {
  ctx.main.append(pageHeader(`${ctx.app.name}`));
}
