// The operator's session: the bearer token (a login token or the static operator token) lives in
// sessionStorage, so it goes away with the browser tab.
import { reactive } from 'vue'

const KEY = 'sopagent.token'

export interface Me {
  username: string
  role: string
}

export const session = reactive<{ token: string | null; me: Me | null }>({
  token: sessionStorage.getItem(KEY),
  me: null,
})

export function signIn(token: string, me: Me | null = null): void {
  session.token = token
  session.me = me
  sessionStorage.setItem(KEY, token)
}

export function signOut(): void {
  session.token = null
  session.me = null
  sessionStorage.removeItem(KEY)
}

export const ROLE_NAMES: Record<string, string> = { admin: '管理员', operator: '运营', advisor: '顾问/售后' }

export function canEdit(): boolean {
  return session.me?.role === 'admin' || session.me?.role === 'operator'
}
