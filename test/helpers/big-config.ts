// A large config file in the envoyproxy/ratelimit format, for reload tests and
// bench/reload.ts: one domain, `count` top-level descriptors. Most are api_key
// values with one limit (key-<i>, i % 10 from 2 to 9); one in ten has two
// (rate_limits, i % 10 === 1); one in ten is a tenant with a nested path
// (i % 10 === 0).
const UNITS = ['second', 'minute', 'hour', 'day'];

export function bigConfigYaml(count: number, domain = 'big'): string {
  const lines = [`domain: ${domain}`, 'descriptors:'];
  for (let i = 0; i < count; i++) {
    const unit = UNITS[i % UNITS.length]!;
    if (i % 10 === 0) {
      lines.push('  - key: tenant', `    value: tenant-${i}`, '    descriptors:', '      - key: path', `        value: /api/v${i % 3}/items`,
        `        rate_limit: { unit: ${unit}, requests_per_unit: ${100 + i} }`);
    } else if (i % 10 === 1) {
      lines.push('  - key: api_key', `    value: key-${i}`, '    rate_limits:',
        `      - { unit: second, requests_per_unit: ${10 + (i % 50)} }`, `      - { unit: hour, requests_per_unit: ${1000 + i} }`);
    } else {
      lines.push('  - key: api_key', `    value: key-${i}`, '    rate_limit:', `      unit: ${unit}`, `      requests_per_unit: ${50 + i}`);
    }
  }
  return `${lines.join('\n')}\n`;
}
