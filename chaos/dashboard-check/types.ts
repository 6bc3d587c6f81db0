// Grafana's dashboard schema as @grafana/grafana-foundation-sdk types it,
// with panels whose queries are Prometheus queries, read as JSON: the
// SDK's enums become the strings they stand for, and the SDK's variant
// marker method (which JSON cannot carry) is left out of the query type.
import type * as dashboard from "@grafana/grafana-foundation-sdk/dashboard";
import type * as prometheus from "@grafana/grafana-foundation-sdk/prometheus";

type IsAny<T> = 0 extends 1 & T ? true : false;
type Json<T> =
  IsAny<T> extends true
    ? any
    : T extends string
      ? string extends T
        ? string
        : `${T}`
      : T extends (infer U)[]
        ? Json<U>[]
        : T extends object
          ? { [K in keyof T]: Json<T[K]> }
          : T;

export type PromQuery = Json<Omit<prometheus.dataquery, "_implementsDataqueryVariant">>;
export type PromPanel = Json<Omit<dashboard.Panel, "targets">> & { targets: PromQuery[] };
export type Board = Json<Omit<dashboard.Dashboard, "panels">> & { panels: PromPanel[] };
