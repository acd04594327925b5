// The one way the console talks to the server: the operator API, typed from /openapi.json
// (console/openapi.json → src/api/schema.d.ts, regenerated with `npm run gen:api`).
import createClient, { type Middleware } from 'openapi-fetch'
import { ElMessage } from 'element-plus'
import type { components, paths } from './schema'
import { session, signOut } from '../auth'
import { router } from '../router'

export type Schemas = components['schemas']

const auth: Middleware = {
  async onRequest({ request }) {
    if (session.token) request.headers.set('Authorization', `Bearer ${session.token}`)
    return request
  },
  async onResponse({ response }) {
    if (response.status === 401 && !response.url.endsWith('/api/auth/login')) {
      signOut()
      if (router.currentRoute.value.name !== 'login') {
        router.push({ name: 'login', query: { next: router.currentRoute.value.fullPath } })
      }
    }
    return response
  },
}

export const api = createClient<paths>({ baseUrl: '' })
api.use(auth)

/** A readable message for an error body: FastAPI's {detail}, a validation list, or the status. */
export function explain(error: unknown, status?: number): string {
  if (error && typeof error === 'object') {
    const detail = (error as { detail?: unknown }).detail
    if (typeof detail === 'string') return detail
    if (Array.isArray(detail)) {
      return detail.map((d: { loc?: unknown[]; msg?: string }) => `${(d.loc ?? []).slice(1).join('.')}: ${d.msg}`).join('；')
    }
    const problems = (error as { problems?: { line: number; reason: string }[] }).problems
    if (Array.isArray(problems)) return problems.map((p) => `第 ${p.line} 行：${p.reason}`).join('；')
  }
  return status ? `请求失败（${status}）` : '请求失败'
}

/** Unwrap an openapi-fetch result: the data, or a toast with the server's reason and null. */
export function ok<T>(result: { data?: T; error?: unknown; response: Response }): T | null {
  if (result.error !== undefined || result.data === undefined) {
    if (result.response.status !== 401) ElMessage.error(explain(result.error, result.response.status))
    return null
  }
  return result.data
}

/** The total of a paginated list (X-Total-Count). */
export function total(response: Response): number {
  return Number(response.headers.get('X-Total-Count') ?? 0)
}
