// Log in with a dashboard user (tally users create EMAIL, or tally demo).

import { logIn } from "../api.js";
import { clear, errorBox, field, h } from "../dom.js";

export async function render(ctx) {
  const email = h("input", { type: "email", name: "email", autocomplete: "username", required: true });
  const password = h("input", {
    type: "password",
    name: "password",
    autocomplete: "current-password",
    required: true,
  });
  const problem = h("div", { class: "form-problem" });
  const submit = h("button", { type: "submit", class: "primary" }, "Log in");
  const form = h(
    "form",
    { class: "login-form", "aria-labelledby": "login-title" },
    field("Email", email),
    field("Password", password),
    problem,
    submit,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clear(problem);
    submit.disabled = true;
    try {
      const session = await logIn(email.value, password.value);
      ctx.setSession(session);
      const next = ctx.query.get("next");
      ctx.navigate(next && next.startsWith("/") && !next.startsWith("//") ? next : "/");
    } catch (error) {
      problem.append(
        errorBox(
          error.status === 401
            ? { message: "That email and password do not match a dashboard user." }
            : error,
        ),
      );
      password.value = "";
      password.focus();
    } finally {
      submit.disabled = false;
    }
  });
  ctx.main.append(
    h(
      "section",
      { class: "login" },
      h("img", { src: "/dashboard/icon.svg", alt: "", class: "login-logo" }),
      h("h1", { id: "login-title", tabindex: "-1" }, "Log in to Tally"),
      form,
      h(
        "p",
        { class: "hint" },
        "No user yet? Run ",
        h("code", {}, "tally users create you@example.com"),
        " on the server, or ",
        h("code", {}, "tally demo"),
        " for a demo app and user.",
      ),
    ),
  );
  email.focus();
}
