/*
 * The walk both codecs use to find the first value they would not give back as it is. The happy path allocates
 * nothing: a problem's path is collected only on the way back up from it.
 */

/** What is wrong and where: `path` holds the path's segments (`.key`, `[3]`) from the bottom up. */
export interface Problem {
  reason: string;
  path: string[];
}

/** Objects on the path from the value being checked down to the current one: a repeat is a cycle. */
export const ancestors: object[] = [];

export function problem(reason: string): Problem {
  return { reason, path: [] };
}

/** Adds the segment that led to `found` (on the way back up) and passes it on. */
export function at(found: Problem, segment: string): Problem {
  found.path.push(segment);
  return found;
}

/** Runs `check` over `value`; the problem it finds, with its path from `$`, or null. */
export function firstProblem(value: unknown, check: (value: unknown) => Problem | null): { path: string; reason: string } | null {
  const depth = ancestors.length;
  try {
    const found = check(value);
    return found ? { path: `$${found.path.reverse().join('')}`, reason: found.reason } : null;
  } finally {
    ancestors.length = depth;
  }
}
