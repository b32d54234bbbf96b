// The hub's roles, each allowed what the one before it is (docs/hub.md, "Tokens and roles").
const order = ['viewer', 'publisher', 'release-manager', 'admin'];

// Whether the signed-in user's role includes `role`.
export function may(who, role) {
  const have = order.indexOf(who?.role);
  return have >= 0 && have >= order.indexOf(role);
}
