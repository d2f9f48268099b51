// Vite imports a file as text with ?raw (the tick-budget test reads wrangler.toml).
declare module "*?raw" {
  const text: string;
  export default text;
}
