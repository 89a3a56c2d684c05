/** Types of bench/site.mjs, for the TypeScript tests that start the site. */

export type PageKind = 'ordinary' | 'oversized' | 'failOnce' | 'limitedOnce' | 'slow' | 'timeoutOnce';

export interface SiteLink {
  href: string;
  /** The path the link means on the site's origin; null for a link to another origin. */
  path: string | null;
}

export interface SitePage {
  kind: PageKind;
  title: string;
  links: SiteLink[];
}

export interface SitePlan {
  pages: number;
  seed: number;
  counts: Record<Exclude<PageKind, 'ordinary'>, number>;
  page(i: number): SitePage;
  indexOf(path: string): number | null;
  expectedFetches(path: string): number;
  reachable(): { paths: Set<string>; missing: string[]; oversized: string[] };
}

export interface Site {
  url: string;
  origin: string;
  plan: SitePlan;
  stats(): { fetches: number; counts: Map<string, number> };
  close(): Promise<void>;
}

export const SLOW_MS: number;
export const TIMEOUT_ONCE_MS: number;
export const OVERSIZED_BYTES: number;
export function kindCounts(pages: number): SitePlan['counts'];
export function pagePath(i: number): string;
export function sitePlan(options: { pages: number; seed?: number }): SitePlan;
export function renderPage(plan: SitePlan, i: number, origin: string): string;
export function startSite(options: { pages: number; seed?: number; port?: number; latencyMs?: number }): Promise<Site>;
